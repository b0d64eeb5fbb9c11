"""python -m leaderboard_service: rank queries, the stream consumer and the ranking keeper."""

from __future__ import annotations

from common.service import main
from leaderboard_service.config import Settings
from leaderboard_service.server import serve

if __name__ == "__main__":
    raise SystemExit(main(Settings.from_env, serve))
