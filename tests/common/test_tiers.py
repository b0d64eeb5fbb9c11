"""common.tiers: which tier a player is in (boundaries of every cutoff kind, ties, order, lower-
is-better boards) and which definitions are refused (issue 18)."""

from __future__ import annotations

import itertools

import pytest

from common.tiers import (
    MAX_TIERS,
    Tier,
    TierError,
    decode,
    encode,
    percent_tenths,
    tier_of,
    validated,
)

DIAMOND = Tier("diamond", "Diamond", "top_percent", 10)  # top 1 %
GOLD = Tier("gold", "Gold", "top_rank", 10)
SILVER = Tier("silver", "Silver", "min_score", 100)
BRONZE = Tier("bronze", "Bronze")
MIXED = validated([DIAMOND, GOLD, SILVER, BRONZE])


def _id(tier: Tier | None) -> str | None:
    return None if tier is None else tier.id


@pytest.mark.parametrize(
    ("rank", "ranked", "score", "expected"),
    [
        # top 1 % of 1,000 is ranks 1..10; of 1,050 it is ranks 1..10 (10.5 -> 10).
        (1, 1000, 0, "diamond"),
        (10, 1000, 0, "diamond"),
        (11, 1000, 10**6, "silver"),  # not top 1 %, not top 10: the score decides
        (10, 1050, 0, "diamond"),
        (11, 1050, 0, "bronze"),
        # 50 players: 1 % is half a player, nobody is Diamond; the top 10 are Gold.
        (1, 50, 0, "gold"),
        (10, 50, 0, "gold"),
        (11, 50, 100, "silver"),
        (11, 50, 99, "bronze"),
        (50, 50, 101, "silver"),
        # Exactly 100 players: rank 1 is the top 1 %.
        (1, 100, 0, "diamond"),
        (2, 100, 0, "gold"),
        # Not ranked: no tier.
        (0, 100, 500, None),
        (1, 0, 500, None),
    ],
)
def test_mixed_tiers_at_their_boundaries(
    rank: int, ranked: int, score: int, expected: str | None
) -> None:
    assert _id(tier_of(MIXED, rank, ranked, score)) == expected


def test_no_tiers_means_no_tier() -> None:
    assert tier_of((), 1, 10, 100) is None


def test_percent_cutoff_matches_the_shown_percentile() -> None:
    """A player shown "top x %" (ceil(1000 * rank / ranked) / 10) is in a tier of x % or more,
    and in none tighter, for every rank of several populations."""
    for ranked in (1, 7, 99, 100, 101, 999, 1000, 1001, 12345):
        for tenths in (1, 5, 10, 25, 100, 333, 500, 999):
            tiers = validated([Tier("t", "T", "top_percent", tenths), BRONZE])
            for rank in range(1, min(ranked, 3000) + 1):
                shown = -(-1000 * rank // ranked)  # in tenths
                expected = "t" if shown <= tenths else "bronze"
                assert _id(tier_of(tiers, rank, ranked, 0)) == expected, (ranked, tenths, rank)


def test_tied_players_share_a_tier() -> None:
    """Tied players share a rank and a score, so they share the tier: 1, 2, 2, 2, 5 with a top-3
    cutoff keeps all three second places in it, and a top-2 cutoff too."""
    ranks = [1, 2, 2, 2, 5]
    for top in (2, 3, 4):
        tiers = validated([Tier("top", "Top", "top_rank", top), BRONZE])
        got = [_id(tier_of(tiers, r, 5, 10)) for r in ranks]
        assert got[1] == got[2] == got[3]
        assert got[1] == "top"


def test_first_matching_tier_wins_in_order() -> None:
    """Rank 5 with 10,000 points: in Gold (top 10) and Silver (>= 100); Gold comes first."""
    assert _id(tier_of(MIXED, 5, 100, 10_000)) == "gold"
    reordered = validated([SILVER, GOLD, BRONZE])
    assert _id(tier_of(reordered, 5, 1000, 10_000)) == "silver"
    assert _id(tier_of(reordered, 5, 1000, 0)) == "gold"


def test_score_tiers_on_a_lower_is_better_board() -> None:
    """On an `asc` board (lap times) a score cutoff is an upper bound: 60,000 ms or faster."""
    tiers = validated(
        [Tier("fast", "Fast", "min_score", 60_000), Tier("ok", "OK", "min_score", 90_000), BRONZE],
        asc=True,
    )
    assert _id(tier_of(tiers, 500, 1000, 60_000, asc=True)) == "fast"
    assert _id(tier_of(tiers, 500, 1000, 60_001, asc=True)) == "ok"
    assert _id(tier_of(tiers, 500, 1000, 90_000, asc=True)) == "ok"
    assert _id(tier_of(tiers, 500, 1000, 90_001, asc=True)) == "bronze"


def test_every_rank_of_a_small_board_exhaustively() -> None:
    """Every (rank, ranked, score) of a small board against a direct reading of the rules."""
    for ranked, score in itertools.product(range(1, 120), (0, 99, 100, 101)):
        for rank in range(1, ranked + 1):
            if rank * 100 <= ranked:
                expected = "diamond"
            elif rank <= 10:
                expected = "gold"
            elif score >= 100:
                expected = "silver"
            else:
                expected = "bronze"
            assert _id(tier_of(MIXED, rank, ranked, score)) == expected


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([GOLD, SILVER], "exactly one tier must be the default"),
        ([GOLD, BRONZE, Tier("iron", "Iron")], "exactly one tier must be the default"),
        ([BRONZE, GOLD], "must come last"),
        ([GOLD, Tier("gold", "Other"), BRONZE], "tier id 'gold' is used twice"),
        ([Tier("Gold!", "Gold", "top_rank", 1), BRONZE], "must match"),
        ([Tier("gold", "", "top_rank", 1), BRONZE], "name must be 1 to 40"),
        ([Tier("gold", "x" * 41, "top_rank", 1), BRONZE], "name must be 1 to 40"),
        ([Tier("a", "A", "top_rank", 10), Tier("b", "B", "top_rank", 5), BRONZE], "not looser"),
        ([Tier("a", "A", "top_rank", 10), Tier("b", "B", "top_rank", 10), BRONZE], "not looser"),
        (
            [Tier("a", "A", "top_percent", 50), Tier("b", "B", "top_percent", 10), BRONZE],
            "not looser",
        ),
        ([Tier("a", "A", "min_score", 10), Tier("b", "B", "min_score", 20), BRONZE], "not looser"),
        ([Tier("a", "A", "top_percent", 0), BRONZE], "between 0.1 and 99.9"),
        ([Tier("a", "A", "top_percent", 1000), BRONZE], "between 0.1 and 99.9"),
        ([Tier("a", "A", "top_rank", 0), BRONZE], "top rank must be between"),
        (
            [Tier(f"t{i}", f"T{i}", "top_rank", i + 1) for i in range(MAX_TIERS)] + [BRONZE],
            f"at most {MAX_TIERS} tiers",
        ),
    ],
)
def test_invalid_definitions_are_refused(tiers: list[Tier], message: str) -> None:
    with pytest.raises(TierError, match=message):
        validated(tiers)


def test_score_order_follows_the_board() -> None:
    ascending = [Tier("a", "A", "min_score", 10), Tier("b", "B", "min_score", 20), BRONZE]
    assert validated(ascending, asc=True)
    with pytest.raises(TierError, match="not looser"):
        validated(ascending)


def test_limits_and_a_lone_default() -> None:
    assert validated([]) == ()
    assert validated([BRONZE]) == (BRONZE,)
    full = [Tier(f"t{i}", f"T{i}", "top_rank", i + 1) for i in range(MAX_TIERS - 1)] + [BRONZE]
    assert len(validated(full)) == MAX_TIERS


def test_percent_tenths() -> None:
    assert percent_tenths(1) == 10
    assert percent_tenths(0.1) == 1
    assert percent_tenths(12.5) == 125
    with pytest.raises(TierError, match=r"multiple of 0\.1"):
        percent_tenths(0.05)


def test_json_round_trip() -> None:
    assert decode(encode(MIXED)) == MIXED
    assert decode(None) == ()
    assert decode([{"id": "b", "name": "B", "kind": None, "value": 0}]) == (Tier("b", "B"),)
    with pytest.raises(TierError):
        decode(b'[{"id": "x", "name": "X", "kind": "nope", "value": 1}]')
    with pytest.raises(TierError):
        decode(b'{"id": "x"}')
