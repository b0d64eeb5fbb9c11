"""Cross-cutting code shared by every Scoreboard service: configuration, errors, JWT verification,
the gRPC server bootstrap, telemetry, database and Redis access, migrations and the CLI."""
