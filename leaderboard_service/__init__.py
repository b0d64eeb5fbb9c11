"""leaderboard_service: applies score events to the Redis ranking and answers rank queries."""
