"""Anomaly detection (pure logic): completions that look automated or excessive are flagged for
admins in the score transaction. A flag never refuses or changes a completion."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from score_service.config import AnomalySettings

DAILY_POINT_CAP = "daily_point_cap"
FAST_COMPLETION = "fast_completion"
KINDS = (DAILY_POINT_CAP, FAST_COMPLETION)


@dataclass(frozen=True)
class Recent:
    """What the ledger says about one user's recent completions, read under the user's lock."""

    now: datetime
    today: date
    # Completions of the requested action today, and its last completion (within the window).
    action_today: int = 0
    action_last: datetime | None = None
    # Points from actions today, before this completion.
    points_today: int = 0
    # The last completion of any action (within the window) and which action it was.
    last_any: datetime | None = None
    last_any_action: str | None = None


@dataclass(frozen=True)
class Anomaly:
    kind: str
    detail: dict[str, object] = field(default_factory=dict)


def detect(
    settings: AnomalySettings, recent: Recent, *, action_id: str, points: int
) -> list[Anomaly]:
    """The anomalies a completion of `points` for `action_id` at recent.now would raise."""
    found: list[Anomaly] = []
    after = recent.points_today + points
    # Flag the completion that crosses the cap: once per user and day, with the points so far.
    if recent.points_today <= settings.daily_point_cap < after:
        found.append(
            Anomaly(
                DAILY_POINT_CAP,
                {
                    "day": recent.today.isoformat(),
                    "points_today": after,
                    "cap": settings.daily_point_cap,
                    "action_id": action_id,
                },
            )
        )
    threshold = settings.min_seconds_between_completions
    if threshold > 0 and recent.last_any is not None:
        gap = (recent.now - recent.last_any).total_seconds()
        if gap < threshold:
            found.append(
                Anomaly(
                    FAST_COMPLETION,
                    {
                        "gap_seconds": round(max(gap, 0.0), 6),
                        "min_seconds": threshold,
                        "action_id": action_id,
                        "previous_action_id": recent.last_any_action or "",
                    },
                )
            )
    return found
