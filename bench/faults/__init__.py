"""The fault suite (issue 16): scenarios that break Redis, PostgreSQL and the services' processes
while completions and viewers keep coming, and the invariants checked after each one."""
