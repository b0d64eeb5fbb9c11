"""python -m score_service: run the gRPC server and the outbox relay."""

from __future__ import annotations

from common.service import main
from score_service.config import Settings
from score_service.server import serve

if __name__ == "__main__":
    raise SystemExit(main(Settings.from_env, serve))
