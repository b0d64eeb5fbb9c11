"""The action catalog: what an action is worth, computed on the server (pure logic)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from google.protobuf.duration_pb2 import Duration

from common.errors import invalid
from common.timestamps import timestamp_pb
from scoreboard.score.v1 import score_service_pb2 as pb

ACTION_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
COLUMNS = (
    "id, board_id, name, description, base_points, difficulty_multiplier, daily_limit,"
    " cooldown_seconds, requires_ticket, min_duration_seconds, active, boards"
)
# How many further boards one action may count on (the migration's check).
MAX_BOARDS = 16
_BOARD_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class CatalogAction:
    action_id: str
    board_id: str
    name: str
    description: str
    base_points: int
    difficulty_multiplier: Decimal
    daily_limit: int
    cooldown_seconds: int
    requires_ticket: bool
    min_duration_seconds: int
    active: bool
    # The further boards a completion counts on, besides `board_id` (issue 17).
    boards: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> CatalogAction:
        *fields, boards = row
        listed = tuple(str(b) for b in boards) if isinstance(boards, list | tuple) else ()
        return replace(cls(*fields), boards=listed)  # type: ignore[arg-type]

    @property
    def all_boards(self) -> tuple[str, ...]:
        """Every board a completion counts on, its own board first."""
        return (self.board_id, *self.boards)

    @property
    def points(self) -> int:
        """Points per completion: base points times difficulty, rounded half up."""
        value = Decimal(self.base_points) * Decimal(self.difficulty_multiplier)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def to_pb(
        self, *, remaining_today: int | None = None, available_at: datetime | None = None
    ) -> pb.Action:
        message = pb.Action(
            action_id=self.action_id,
            name=self.name,
            description=self.description,
            base_points=self.base_points,
            difficulty_multiplier=float(self.difficulty_multiplier),
            points=self.points,
            daily_limit=self.daily_limit,
            cooldown=Duration(seconds=self.cooldown_seconds),
            active=self.active,
            requires_ticket=self.requires_ticket,
            min_duration=Duration(seconds=self.min_duration_seconds),
            remaining_today=self.daily_limit if remaining_today is None else remaining_today,
            board_ids=list(self.boards),
        )
        if available_at is not None:
            message.available_time.CopyFrom(timestamp_pb(available_at))
        return message


def from_pb(message: pb.Action, board_id: str) -> CatalogAction:
    """Validate an admin's definition; every bad field gets a clear message."""
    if not ACTION_ID.match(message.action_id):
        raise invalid("action_id must be 1-64 lowercase letters, digits, '-' or '_'")
    name = message.name.strip()
    if not 1 <= len(name) <= 80:
        raise invalid("name must be 1-80 characters")
    if len(message.description) > 500:
        raise invalid("description must be at most 500 characters")
    if not 0 <= message.base_points <= 1_000_000:
        raise invalid("base_points must be between 0 and 1000000")
    if not math.isfinite(message.difficulty_multiplier):
        raise invalid("difficulty_multiplier must be a number above 0 and at most 100")
    multiplier = Decimal(str(message.difficulty_multiplier or 1.0)).quantize(
        Decimal("0.001"), rounding=ROUND_HALF_UP
    )
    if not Decimal(0) < multiplier <= Decimal(100):
        raise invalid("difficulty_multiplier must be above 0 and at most 100")
    daily_limit = message.daily_limit or 1
    if not 1 <= daily_limit <= 100_000:
        raise invalid("daily_limit must be between 1 and 100000")
    cooldown = message.cooldown.seconds
    minimum = message.min_duration.seconds
    if not 0 <= cooldown <= 86400 or not 0 <= minimum <= 86400:
        raise invalid("cooldown and min_duration must be between 0 and 86400 seconds")
    boards = tuple(message.board_ids)
    if len(boards) > MAX_BOARDS or len(set(boards)) != len(boards):
        raise invalid(f"board_ids must be at most {MAX_BOARDS} distinct boards")
    for board in boards:
        if not _BOARD_ID.match(board) or board == board_id:
            raise invalid(f"board_ids: {board!r} is not a further board id")
    return CatalogAction(
        action_id=message.action_id,
        board_id=board_id,
        name=name,
        description=message.description,
        base_points=message.base_points,
        difficulty_multiplier=multiplier,
        daily_limit=daily_limit,
        cooldown_seconds=cooldown,
        requires_ticket=message.requires_ticket,
        min_duration_seconds=minimum,
        active=message.active,
        boards=boards,
    )


def with_activity(action: CatalogAction, active: bool) -> CatalogAction:
    return replace(action, active=active)


def cooldown_end(action: CatalogAction, last: datetime | None) -> datetime | None:
    if last is None or action.cooldown_seconds == 0:
        return None
    return last + timedelta(seconds=action.cooldown_seconds)
