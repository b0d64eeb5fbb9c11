"""The business rules of a completion, as pure functions of what the ledger says."""

from __future__ import annotations

from datetime import datetime

from common.errors import Reason, precondition
from score_service.catalog import CatalogAction, cooldown_end


def check_active(action: CatalogAction) -> None:
    if not action.active:
        raise precondition(Reason.ACTION_INACTIVE, f"action {action.action_id} is not active")


def check_limits(
    action: CatalogAction, *, today_count: int, last_completed: datetime | None, now: datetime
) -> int:
    """Return the slot (n-th completion today) this completion takes, or refuse it."""
    if today_count >= action.daily_limit:
        times = "once" if action.daily_limit == 1 else f"{action.daily_limit} times"
        raise precondition(
            Reason.DAILY_LIMIT_REACHED,
            f"Action already completed today: {action.action_id} counts {times} per day",
        )
    end = cooldown_end(action, last_completed)
    if end is not None and now < end:
        wait = max(1, int((end - now).total_seconds() + 0.999))
        raise precondition(
            Reason.COOLDOWN_ACTIVE,
            f"Action is cooling down; try again in {wait} seconds",
            retry_after=str(wait),
        )
    return today_count + 1


def check_completion(
    action: CatalogAction, *, today_count: int, last_completed: datetime | None, now: datetime
) -> int:
    """Active, within the daily limit, past the cooldown: the slot this completion takes."""
    check_active(action)
    return check_limits(action, today_count=today_count, last_completed=last_completed, now=now)
