"""python -m ops is the scoreboard CLI."""

from ops.cli import main

raise SystemExit(main())
