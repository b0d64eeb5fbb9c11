"""python -m edge: the HTTP and WebSocket front door."""

from __future__ import annotations

import sys

from common.config import ConfigError
from edge.config import Settings
from edge.server import serve


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
