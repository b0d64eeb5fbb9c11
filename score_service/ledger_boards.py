"""The boards one completion counts on (issue 17), as pure logic: which boards and periods, whether
the reported value is acceptable, and what each board's total becomes.

A completion counts on its action's own board (the catalog's, the default board: its result is
the response's main fields, and the daily limit, cooldown and anomaly counters are read and kept
there) and on the further boards of the action (`CatalogAction.boards`) that have a period open
at the clock. Every board gets its own ledger row, total, version and event in its period, so
`total == SUM(points)` holds per user, board and period on every board:

- `sum` adds the action's points;
- `best` keeps the better of the stored total and the reported value (higher, or lower on an
  `asc` board; the first value always counts);
- `latest` replaces the total by the value.

The points of a `best`/`latest` row are the change of the total (0 when a best board kept a
better value; the time the total was reached then stays too, so an earlier achiever stays
ahead), and the row records the value itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.boards import Board
from common.errors import Reason, invalid
from score_service.catalog import CatalogAction


@dataclass(frozen=True)
class OpenBoard:
    """A board a completion may count on, and its period open at the clock (None: none is, the
    season has not started or is over)."""

    board: Board
    period: int | None

    @property
    def asc(self) -> bool:
        return self.board.sort_order == "asc"


@dataclass(frozen=True)
class Target:
    board_id: str
    period: int
    asc: bool
    combine: str


def targets(action: CatalogAction, primary: str, boards: Mapping[str, OpenBoard]) -> list[Target]:
    """The boards (with their open period) the action's completion counts on, its own board
    first; further boards without an open period are left out. The primary board always has one
    (the caller refuses the completion otherwise)."""
    found: list[Target] = []
    for board_id in (primary, *action.boards):
        known = boards.get(board_id)
        if known is None or known.period is None:
            continue
        found.append(Target(board_id, known.period, known.asc, known.board.combine))
    return found


def check_value(
    action: CatalogAction, value: int | None, boards: Mapping[str, OpenBoard], primary: str
) -> None:
    """A value is reported exactly when one of the action's boards takes one, and lies within
    the bounds of each of them (INVALID_ARGUMENT otherwise)."""
    valued: Sequence[Board] = [
        known.board
        for board_id in (primary, *action.boards)
        if (known := boards.get(board_id)) is not None and known.board.combine != "sum"
    ]
    if not valued:
        if value is not None:
            raise invalid(f"action {action.action_id} takes no value: its boards add points")
        return
    if value is None:
        raise invalid(
            f"action {action.action_id} needs a value for board {valued[0].id}"
            f" ({valued[0].combine}), reported by a game server"
        )
    for board in valued:
        low, high = board.min_value, board.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"[{'' if low is None else low}, {'' if high is None else high}]"
            raise invalid(
                f"value {value} is outside board {board.id}'s bounds {bounds}",
                Reason.VALUE_OUT_OF_BOUNDS,
            )


def new_total(target: Target, *, total: int, version: int, points: int, value: int | None) -> int:
    """The user's total on the board after this completion."""
    if target.combine == "sum" or value is None:
        return total + points
    if target.combine == "latest" or version == 0:
        return value
    better = value < total if target.asc else value > total
    return value if better else total
