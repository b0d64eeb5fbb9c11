"""Rank queries answered from Redis in one round trip, or from PostgreSQL while the ranking is
not ready (cold start, after a wipe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from common.redis_keys import BoardKeys
from common.redis_values import Entry, decode_entries
from leaderboard_service.scripts import Scripts, text

TOP_SIZE = 10


@dataclass(frozen=True)
class TopPage:
    entries: list[Entry]
    total_users: int
    # Commit time (µs) of the newest change in the top 10.
    update_us: int
    from_fallback: bool = False


@dataclass(frozen=True)
class UserRank:
    entry: Entry
    # 0-based position in the ordering (ties broken by time, then user id).
    position: int
    total_users: int
    tenth_score: int | None
    nearby: list[Entry] = field(default_factory=list)
    from_fallback: bool = False
    # A lower-is-better board: the distance to the top 10 is counted downwards.
    asc: bool = False

    @property
    def in_top10(self) -> bool:
        """Listed in the top 10 (by position: a user tied with the 10th but later is not)."""
        return self.position < TOP_SIZE

    @property
    def distance_from_top10(self) -> int:
        """Points needed to be listed in the top 10: one more than the 10th (who reached that
        score earlier and so stays ahead on a tie); 0 when already in it."""
        if self.in_top10 or self.tenth_score is None:
            return 0
        if self.asc:
            return self.entry.score - self.tenth_score + 1
        return self.tenth_score - self.entry.score + 1


@dataclass(frozen=True)
class Listed:
    """One user of a chosen list: `entry` (with its global rank) when ranked, else None."""

    user_id: str
    entry: Entry | None = None
    # Rank within the list (standard competition ranking over the ranked users); 0 unranked.
    list_rank: int = 0


@dataclass(frozen=True)
class UsersRanks:
    """The ranked users of a chosen list, as found, and the board's ranked users."""

    entries: list[Entry]
    total_users: int
    from_fallback: bool = False


def _order(entry: Entry, asc: bool = False) -> tuple[int, int, str]:
    """The board's order (DESIGN decision 5): score desc (asc on a lower-is-better board),
    reached time asc, user id asc."""
    return (entry.score if asc else -entry.score, entry.reached_us, entry.user_id)


def listed(user_ids: Sequence[str], found: Sequence[Entry], asc: bool = False) -> list[Listed]:
    """The chosen users, each once: the ranked ones in the board's order with their rank within
    the list (ties share it: 1, 2, 2, 4), then the unranked ones in the order asked."""
    ranked = sorted(found, key=lambda entry: _order(entry, asc))
    result: list[Listed] = []
    for index, entry in enumerate(ranked):
        tied = index > 0 and ranked[index - 1].score == entry.score
        result.append(Listed(entry.user_id, entry, result[-1].list_rank if tied else index + 1))
    seen = {e.user_id for e in ranked}
    result += [Listed(user) for user in dict.fromkeys(user_ids) if user not in seen]
    return result


class RankingNotReady(Exception):
    """The Redis ranking is missing or being rebuilt; ask PostgreSQL."""


class RedisRanking:
    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    async def top(self, keys: BoardKeys, offset: int, count: int) -> TopPage:
        reply = await self._scripts.of(keys).top(
            keys=[keys.ranking, keys.users, keys.meta, keys.ready], args=[offset, count]
        )
        if not int(reply[0]):
            raise RankingNotReady(keys.board)
        return TopPage(decode_entries(reply[1]), int(reply[2]), int(text(reply[3])))

    async def user_rank(self, keys: BoardKeys, user_id: str, around: int) -> UserRank | None:
        """None when the user is not ranked."""
        reply = await self._scripts.of(keys).user_rank(
            keys=[keys.ranking, keys.users, keys.ready], args=[user_id, around]
        )
        if not int(reply[0]):
            raise RankingNotReady(keys.board)
        if not int(reply[1]):
            return None
        rank, score, position, total, tenth, name, reached, nearby = reply[2:10]
        tenth_text = text(tenth)
        return UserRank(
            entry=Entry(int(rank), user_id, text(name), int(text(score)), int(text(reached))),
            position=int(position),
            total_users=int(total),
            tenth_score=int(tenth_text) if tenth_text else None,
            nearby=decode_entries(nearby),
            asc=keys.asc,
        )

    async def for_users(self, keys: BoardKeys, user_ids: Sequence[str]) -> UsersRanks:
        """The ranked ones among `user_ids` (distinct), with their global ranks."""
        reply = await self._scripts.of(keys).for_users(
            keys=[keys.ranking, keys.users, keys.ready], args=list(user_ids)
        )
        if not int(reply[0]):
            raise RankingNotReady(keys.board)
        return UsersRanks(decode_entries(reply[2]), int(reply[1]))
