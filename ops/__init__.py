"""Operator and developer tooling: the `scoreboard` CLI, the dev stack `make run` starts, embedded
PostgreSQL and Redis, and the database migrations. No service imports this package."""
