"""python -m common is the scoreboard CLI."""

from common.cli import main

raise SystemExit(main())
