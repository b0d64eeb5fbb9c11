"""python -m stream_service: WatchTop10 for every watcher, from one Redis subscription."""

from __future__ import annotations

from common.service import main
from stream_service.config import Settings
from stream_service.server import serve

if __name__ == "__main__":
    raise SystemExit(main(Settings.from_env, serve))
