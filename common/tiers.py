"""A board's tiers (issue 18): named groups of players by a cutoff, and which one a player is in.

A board defines tiers as an ordered list, best first. Every tier but the last has one cutoff:
- `top_percent` p: the player's rank is within the top p % of the ranked players
  (rank * 100 <= p * ranked; p in tenths of a percent, as the shown percentile: a player shown
  "top 1 %" is in a 1 % tier);
- `top_rank` n: the player's rank is n or better;
- `min_score` s: the player's score is at least s (at most s on a lower-is-better board: "at
  least as good as s").
The last tier is the default: no cutoff, everyone ranked who is in no other tier. A player is in
the first tier (in the board's order) whose cutoff it meets. Tiers depend only on (rank, ranked
players, score), so tied players (who share a rank and a score) share a tier. Unranked players
are in no tier.

Validation keeps a definition unambiguous: ids unique, at most MAX_TIERS tiers, exactly one
default and it comes last, and tiers of one kind get strictly looser down the list (a later one
would otherwise never be reached). Mixed kinds are allowed: the first match wins.

`percentile` is the other half of a player's standing, shared by leaderboard_service (GetUserRank)
and stream_service (RANK_UPDATE) so both always show the same figure.

The JSON form (`encode`/`decode`) is what PostgreSQL stores (boards.tiers) and what
leaderboard_service copies into Redis for stream_service (BoardKeys.tiers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson


def percentile(rank: int, total_users: int, min_players: int) -> float | None:
    """Top x %: the share of ranked users at or above this rank, rounded up to a tenth
    (ceil(1000 * rank / total) / 10), so the best get 0.1 and the last 100.0; users tied share
    it. None below `min_players` ranked users (too few for a percentage to mean much)."""
    if total_users <= 0 or total_users < min_players or not 0 < rank <= total_users:
        return None
    return -(-1000 * rank // total_users) / 10


__all__ = [
    "KINDS",
    "MAX_TIERS",
    "Tier",
    "TierError",
    "decode",
    "decode_copy",
    "encode",
    "encode_copy",
    "percent_tenths",
    "tier_of",
    "validated",
]

Kind = Literal["top_percent", "top_rank", "min_score"]
KINDS: tuple[Kind, ...] = ("top_percent", "top_rank", "min_score")
MAX_TIERS = 16
MAX_NAME = 40
TIER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_MAX_SCORE = 2**63 - 1


class TierError(ValueError):
    """A tier definition that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Tier:
    """One tier. `kind` None is the default tier (no cutoff). `value`: tenths of a percent for
    top_percent (10 = 1 %), a rank for top_rank, a score for min_score."""

    id: str
    name: str
    kind: Kind | None = None
    value: int = 0

    @property
    def is_default(self) -> bool:
        return self.kind is None

    @property
    def percent(self) -> float:
        """A top_percent tier's cutoff in percent (1.0 for 1 %)."""
        return self.value / 10

    def holds(self, rank: int, ranked: int, score: int, *, asc: bool = False) -> bool:
        """Whether a ranked player (rank >= 1 among `ranked`) meets this tier's cutoff."""
        if self.kind is None:
            return True
        if self.kind == "top_rank":
            return rank <= self.value
        if self.kind == "top_percent":
            return rank * 1000 <= self.value * ranked
        return score <= self.value if asc else score >= self.value

    def describe(self) -> str:
        if self.kind is None:
            return f"{self.id} (default)"
        if self.kind == "top_percent":
            return f"{self.id} (top {self.percent:g} %)"
        if self.kind == "top_rank":
            return f"{self.id} (top {self.value})"
        return f"{self.id} (score {self.value})"


def tier_of(
    tiers: Sequence[Tier], rank: int, ranked: int, score: int, *, asc: bool = False
) -> Tier | None:
    """The tier of a player at `rank` (competition rank, 0 = not ranked) among `ranked`
    players with `score`; None when the board defines no tiers or the player is not ranked."""
    if not tiers or rank <= 0 or ranked <= 0:
        return None
    for tier in tiers:
        if tier.holds(rank, ranked, score, asc=asc):
            return tier
    return None  # unreachable for a validated list (it ends with the default)


def percent_tenths(percent: float) -> int:
    """A percentage given as a number -> tenths; TierError unless a multiple of 0.1 in
    (0, 100)."""
    tenths = round(percent * 10)
    if abs(tenths - percent * 10) > 1e-6:
        raise TierError(f"top percent {percent:g} must be a multiple of 0.1")
    return tenths


def validated(tiers: Sequence[Tier], *, asc: bool = False) -> tuple[Tier, ...]:
    """The tiers, or TierError naming what is wrong. An empty list is valid (no tiers)."""
    if not tiers:
        return ()
    if len(tiers) > MAX_TIERS:
        raise TierError(f"a board has at most {MAX_TIERS} tiers, not {len(tiers)}")
    seen: set[str] = set()
    for tier in tiers:
        if not TIER_ID.match(tier.id):
            raise TierError(f"tier id {tier.id[:40]!r} must match {TIER_ID.pattern}")
        if tier.id in seen:
            raise TierError(f"tier id {tier.id!r} is used twice")
        seen.add(tier.id)
        if not 1 <= len(tier.name) <= MAX_NAME or not tier.name.strip():
            raise TierError(f"tier {tier.id!r}: name must be 1 to {MAX_NAME} characters")
        _check_value(tier)
    defaults = [t.id for t in tiers if t.is_default]
    if len(defaults) != 1:
        shown = ", ".join(defaults) if defaults else "none"
        raise TierError(
            f"exactly one tier must be the default (no cutoff), found {len(defaults)}: {shown}"
        )
    if not tiers[-1].is_default:
        raise TierError(f"the default tier {defaults[0]!r} must come last (tiers go best first)")
    last: dict[Kind, Tier] = {}
    for tier in tiers[:-1]:
        assert tier.kind is not None
        before = last.get(tier.kind)
        if before is not None and not _looser(before, tier, asc=asc):
            raise TierError(
                f"tier {tier.describe()} comes after {before.describe()} but is not looser:"
                " tiers go best first, so no player would ever be in it"
            )
        last[tier.kind] = tier
    return tuple(tiers)


def _check_value(tier: Tier) -> None:
    if tier.kind is None:
        return
    if tier.kind not in KINDS:
        raise TierError(f"tier {tier.id!r}: cutoff must be one of {', '.join(KINDS)}")
    if tier.kind == "top_percent" and not 1 <= tier.value <= 999:
        raise TierError(f"tier {tier.id!r}: top percent must be between 0.1 and 99.9")
    if tier.kind == "top_rank" and not 1 <= tier.value <= 1_000_000_000:
        raise TierError(f"tier {tier.id!r}: top rank must be between 1 and 1,000,000,000")
    if tier.kind == "min_score" and not -_MAX_SCORE <= tier.value <= _MAX_SCORE:
        raise TierError(f"tier {tier.id!r}: min score is out of range")


def _looser(before: Tier, after: Tier, *, asc: bool) -> bool:
    if after.kind == "min_score":
        return after.value > before.value if asc else after.value < before.value
    return after.value > before.value


def encode(tiers: Sequence[Tier]) -> bytes:
    """JSON: [{"id", "name", "kind", "value"}, ...] (kind null for the default)."""
    return orjson.dumps(
        [{"id": t.id, "name": t.name, "kind": t.kind, "value": t.value} for t in tiers]
    )


def decode(data: object) -> tuple[Tier, ...]:
    """What `encode` wrote (or PostgreSQL's jsonb as psycopg reads it); TierError when it is
    not a list of tiers."""
    if data is None:
        return ()
    try:
        items = orjson.loads(data) if isinstance(data, bytes | str) else data
        if not isinstance(items, list):
            raise TierError("tiers must be a JSON list")
        tiers: list[Tier] = []
        for item in items:
            if not isinstance(item, dict):
                raise TierError("a tier must be a JSON object")
            given = item.get("kind")
            kind = next((k for k in KINDS if k == given), None)
            if given is not None and kind is None:
                raise TierError(f"unknown tier cutoff {given!r}")
            value = item.get("value", 0)
            if type(value) is not int:
                raise TierError("a tier's value must be an integer")
            tiers.append(Tier(str(item["id"]), str(item["name"]), kind, value))
    except (orjson.JSONDecodeError, KeyError) as exc:
        raise TierError(f"stored tiers are not valid: {exc}") from exc
    return tuple(tiers)


def encode_copy(tiers: Sequence[Tier], *, asc: bool) -> bytes:
    """The Redis copy of a board's tiers (BoardKeys.tiers): {"asc": bool, "tiers": [...]}, the
    sort order included since a score cutoff reads it."""
    items = orjson.loads(encode(tiers))
    return orjson.dumps({"asc": asc, "tiers": items})


def decode_copy(data: bytes | str) -> tuple[tuple[Tier, ...], bool]:
    """(tiers, asc) from what encode_copy wrote; TierError when it is not that."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TierError(f"stored tiers are not valid: {exc}") from exc
    if not isinstance(value, dict):
        raise TierError("stored tiers must be a JSON object")
    return decode(value.get("tiers")), value.get("asc") is True
