"""Personal live rank, the pure part: a user's rank state, what counts as a change worth
telling (thresholds, moves of a share of the rank), and the RankUpdate message built from it.

The percentile is GetUserRank's (leaderboard_service.ranking.percentile; services share no code,
tests/stream_service/test_rank_logic.py checks both agree): top x % = rank / ranked users * 100,
rounded up to a tenth, hidden below the minimum population. The tier is common.tiers.tier_of over
the board's tiers (the rank hub puts it in the state); a change of tier is a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.tiers import Tier, percentile
from common.timestamps import timestamp_pb_us
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings

# Boards have one endless period for now (DESIGN decision 11); periods are numbered from 1.
SINGLE_PERIOD = 1


@dataclass(frozen=True)
class RankState:
    """Where a user stands: competition rank (0 = not ranked), score, ranked users, the
    nearest better total (None at rank 1 or when not ranked), and its tier on a board with tiers
    (None otherwise or when not ranked)."""

    rank: int
    score: int
    total: int
    next_score: int | None = None
    tier: Tier | None = None


@dataclass(frozen=True)
class Player:
    user_id: str
    username: str


def _top(rank: int, tops: tuple[int, ...]) -> int | None:
    """The smallest top the rank is in (tops ascending); None outside all of them."""
    if rank <= 0:
        return None
    for top in tops:
        if rank <= top:
            return top
    return None


def _band(state: RankState, settings: RankSettings) -> float | None:
    share = percentile(state.rank, state.total, settings.percentile_min_players)
    if share is None:
        return None
    for band in settings.percentile_bands:
        if share <= band:
            return band
    return None


def crossed(old: RankState, new: RankState, settings: RankSettings) -> list[str]:
    """The thresholds entered or left between two states: every top and percentile band whose
    membership differs, e.g. ["top10"] for 11th -> 9th, ["top100", "top10"] for 150th -> 5th,
    and the tier left and the tier entered, e.g. ["tier:silver", "tier:gold"]."""
    names: list[str] = []
    old_tier = old.tier.id if old.tier is not None else None
    new_tier = new.tier.id if new.tier is not None else None
    if old_tier != new_tier:
        names += [f"tier:{t}" for t in (old_tier, new_tier) if t is not None]
    for top in settings.tops:
        if (0 < old.rank <= top) != (0 < new.rank <= top):
            names.append(f"top{top}")
    old_share = percentile(old.rank, old.total, settings.percentile_min_players)
    new_share = percentile(new.rank, new.total, settings.percentile_min_players)
    if old_share is not None and new_share is not None:
        for band in settings.percentile_bands:
            if (old_share <= band) != (new_share <= band):
                names.append(f"top{band:g}%")
    return names


def significant(old: RankState, new: RankState, settings: RankSettings) -> bool:
    """What the ticker pushes: a threshold crossed, or a rank move of at least the configured
    share of the rank last told (at least one place), or ranked <-> unranked."""
    if (old.rank == 0) != (new.rank == 0):
        return True
    if crossed(old, new, settings):
        return True
    if old.rank == 0:
        return False
    return abs(new.rank - old.rank) >= max(1.0, settings.move_share * old.rank)


def build_update(
    board: str,
    user_id: str,
    state: RankState,
    reason: pb.RankReason.ValueType,
    settings: RankSettings,
    *,
    crossed_names: list[str] | None = None,
    by: Player | None = None,
    change_us: int = 0,
) -> pb.RankUpdate:
    update = pb.RankUpdate(
        board_id=board,
        period=SINGLE_PERIOD,
        user_id=user_id,
        rank=state.rank,
        score=state.score if state.rank else 0,
        total_players=state.total,
        reason=reason,
        crossed=crossed_names or [],
    )
    share = percentile(state.rank, state.total, settings.percentile_min_players)
    if share is not None:
        update.percentile = share
    if state.rank and state.tier is not None:
        update.tier = state.tier.id
        update.tier_name = state.tier.name
    if state.rank > 1 and state.next_score is not None:
        # The nearest better total is higher, or lower on a lower-is-better board.
        update.distance_to_next = abs(state.next_score - state.score)
    if by is not None:
        update.overtaken_by.CopyFrom(pb.RankPlayer(user_id=by.user_id, username=by.username))
    if change_us:
        update.change_time.CopyFrom(timestamp_pb_us(change_us))
    return update
