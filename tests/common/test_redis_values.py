"""The Redis value contract: leaderboard_service's real Lua scripts write, common/redis_values.py
reads (and its Python writers produce the same bytes as the Lua). Both services' scripts read the
values with the one shared Lua library (common/lua/redis_values.lua), so they report the same
true totals and ranks on either sort order, and no script defines its own copy of it."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from common.redis_keys import BoardKeys, Keys
from common.redis_values import (
    PERIOD_FIELD,
    SEQ_FIELD,
    TS_FIELD,
    Entry,
    MalformedValue,
    Member,
    Moves,
    Top10,
    UserState,
    above,
    decode_entries,
    decode_moves,
    decode_top10,
    encode_entries,
    encode_top10,
    parse_member,
    parse_user_state,
    ranking_member,
    ranking_score,
    reached_key,
    state_head,
    stored_top10,
    total_of,
)
from leaderboard_service.events import script_args
from leaderboard_service.scripts import Scripts
from scoreboard.events.v1 import events_pb2
from stream_service.config import RankSettings
from stream_service.rank_hub import RankHub
from stream_service.ranks import RankState

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "common" / "lua" / "redis_values.lua"
NOW_US = 1_767_225_600_000_000  # the caller's clock: where a new sequence starts
T0 = 1_767_225_000_000_000


@dataclass(frozen=True)
class Change:
    user_id: str
    total: int
    version: int
    reached_us: int
    commit_us: int
    name: str
    excluded: bool = False

    def args(self, asc: bool = False) -> list[str]:
        def stamp(us: int) -> Timestamp:
            value = Timestamp()
            value.FromMicroseconds(us)
            return value

        return script_args(
            events_pb2.ScoreUpdated(
                board_id="default",
                user_id=self.user_id,
                display_name=self.name,
                total=self.total,
                version=self.version,
                reached_time=stamp(self.reached_us),
                commit_time=stamp(self.commit_us),
                excluded=self.excluded,
            ),
            asc,
        )


def _user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture
async def board(redis_url: str, run_prefix: str) -> AsyncIterator[tuple[aioredis.Redis, BoardKeys]]:
    """A private board in the run's prefix, marked ready (as after a rebuild)."""
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(f"{run_prefix}values-{secrets.token_hex(3)}:").board("default")
    await redis.set(keys.ready, "1")
    try:
        yield redis, keys
    finally:
        await redis.aclose()


async def _apply(redis: aioredis.Redis, keys: BoardKeys, changes: list[Change]) -> Any:
    """Run apply.lua as the consumer does; return the message it published (None if none)."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel)
    try:
        applied, seq, _ready = await Scripts(redis).apply_events(
            keys,
            [change.args(keys.asc) for change in changes],
            now_us=NOW_US,
            group="contract",
            rank_moves=False,
        )
        assert int(applied) == len(changes)
        if int(seq) == 0:
            return None
        async with asyncio.timeout(5):
            while True:
                message = await pubsub.get_message(timeout=1)
                if message is not None and message["type"] == "message":
                    return message["data"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _apply_with_moves(redis: aioredis.Redis, keys: BoardKeys, changes: list[Change]) -> Moves:
    """Run apply.lua as the consumer does, one batch per change; return the rank moves it
    published."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.rank_channel)
    found = Moves(0, [])
    try:
        for change in changes:
            await Scripts(redis).apply_events(
                keys, [change.args(keys.asc)], now_us=NOW_US, group="contract"
            )
            async with asyncio.timeout(5):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        moves = decode_moves(message["data"])
                        found = Moves(moves.ranked, [*found.moves, *moves.moves])
                        break
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    return found


async def _stored(redis: aioredis.Redis, keys: BoardKeys) -> Top10 | None:
    body = await redis.get(keys.top)
    seq, ts, period = await redis.hmget(keys.meta, [SEQ_FIELD, TS_FIELD, PERIOD_FIELD])
    return stored_top10(body, seq, ts, period)


async def test_an_empty_top10_is_stored_and_published_as_no_entries(
    board: tuple[aioredis.Redis, BoardKeys],
) -> None:
    redis, keys = board
    banned = Change(_user(9), 40, 1, T0 + 5, T0 + 6, "Banned", excluded=True)

    published = await _apply(redis, keys, [banned])

    assert decode_top10(published) == Top10(NOW_US, T0 + 6, [])
    assert await _stored(redis, keys) == Top10(NOW_US, T0 + 6, [])
    assert await redis.zcard(keys.ranking) == 0
    raw = await redis.hget(keys.users, banned.user_id)
    assert raw is not None
    assert parse_user_state(raw) == UserState(1, T0 + 5, True, "Banned")


async def test_what_the_scripts_write_decodes_to_the_applied_events(
    board: tuple[aioredis.Redis, BoardKeys],
) -> None:
    redis, keys = board
    late = Change(_user(1), 50, 1, T0 + 300, T0 + 301, "Late")
    early = Change(_user(2), 50, 3, T0 + 100, T0 + 102, "Early")
    top = Change(_user(3), 70, 2, T0 + 200, T0 + 250, "Top")
    last = Change(_user(4), 0, 1, T0 + 50, T0 + 60, "Last")

    first = decode_top10(await _apply(redis, keys, [late, early]))
    published = decode_top10(await _apply(redis, keys, [top, last]))

    # The ranking: members and scores, best first.
    members: Any = await redis.zrange(keys.ranking, 0, -1, withscores=True)
    assert [(parse_member(m), total_of(s)) for m, s in members] == [
        (Member(top.user_id, T0 + 200), 70),
        (Member(early.user_id, T0 + 100), 50),
        (Member(late.user_id, T0 + 300), 50),
        (Member(last.user_id, T0 + 50), 0),
    ]
    assert [m for m, _ in members] == [
        ranking_member(c.user_id, c.reached_us).encode() for c in (top, early, late, last)
    ]
    assert [s for _, s in members] == [float(ranking_score(t)) for t in (70, 50, 50, 0)]
    assert await redis.zcount(keys.ranking, "-inf", above(50)) == 1

    # The user states, and Python's encoding of them byte for byte.
    raw_states: Any = await redis.hgetall(keys.users)
    states = {k.decode(): parse_user_state(v) for k, v in raw_states.items()}
    for change in (late, early, top, last):
        expected = UserState(change.version, change.reached_us, False, change.name)
        assert states[change.user_id] == expected
        assert raw_states[change.user_id.encode()] == expected.encode().encode()

    # The published snapshots and the stored one.
    assert first == Top10(
        NOW_US,
        T0 + 301,
        [Entry(1, early.user_id, "Early", 50), Entry(1, late.user_id, "Late", 50)],
    )
    expected_top = [
        Entry(1, top.user_id, "Top", 70),
        Entry(2, early.user_id, "Early", 50),
        Entry(2, late.user_id, "Late", 50),
        Entry(4, last.user_id, "Last", 0),
    ]
    assert published == Top10(NOW_US + 1, T0 + 250, expected_top)
    assert await _stored(redis, keys) == published
    assert await redis.get(keys.top) == encode_entries(expected_top)

    # A page of top.lua carries the reached times.
    reply = await Scripts(redis).top(
        keys=[keys.ranking, keys.users, keys.meta, keys.ready], args=[1, 2]
    )
    page = decode_entries(reply[1])
    assert page == [
        Entry(2, early.user_id, "Early", 50, T0 + 100),
        Entry(2, late.user_id, "Late", 50, T0 + 300),
    ]
    assert reply[1] == encode_entries(page, with_reached=True)

    # What reconcile sends compare.lua describes these states exactly.
    args: list[Any] = [4]
    for change in (late, early, top, last):
        args += [
            change.user_id,
            state_head(change.version, change.reached_us, False),
            reached_key(change.reached_us),
            str(ranking_score(change.total)),
        ]
    differ, found_members, found_states = await Scripts(redis).compare(
        keys=[keys.ranking, keys.users], args=args
    )
    assert (differ, found_members, found_states) == (0, 4, 4)


async def test_a_lower_is_better_period_ranks_lower_first_and_names_its_period(
    board: tuple[aioredis.Redis, BoardKeys],
) -> None:
    redis, default_keys = board
    keys = Keys(default_keys.prefix).board("laps", 2, asc=True)
    await redis.set(keys.ready, "1")
    slow = Change(_user(1), 90_000, 1, T0 + 10, T0 + 11, "Slow")
    fast = Change(_user(2), 80_000, 1, T0 + 20, T0 + 21, "Fast")
    tied = Change(_user(3), 80_000, 1, T0 + 30, T0 + 31, "Tied")

    published = decode_top10(await _apply(redis, keys, [slow, fast, tied]))

    expected = [
        Entry(1, fast.user_id, "Fast", 80_000),
        Entry(1, tied.user_id, "Tied", 80_000),
        Entry(3, slow.user_id, "Slow", 90_000),
    ]
    assert published == Top10(NOW_US, T0 + 31, expected, period=2)
    assert await _stored(redis, keys) == published
    members: Any = await redis.zrange(keys.ranking, 0, -1, withscores=True)
    assert [(parse_member(m).user_id, total_of(s, asc=True)) for m, s in members] == [
        (fast.user_id, 80_000),
        (tied.user_id, 80_000),
        (slow.user_id, 90_000),
    ]
    assert ranking_score(80_000, asc=True) == 80_000 == -ranking_score(80_000)


@pytest.mark.parametrize("asc", [False, True], ids=["desc", "asc"])
async def test_both_services_scripts_read_the_true_totals_and_ranks(
    board: tuple[aioredis.Redis, BoardKeys], asc: bool
) -> None:
    """apply.lua's rank moves, user_rank.lua (GetUserRank) and stream_service's ranks.lua (the
    live rank) decode the ranking's scores with the shared library: the totals as PostgreSQL
    holds them, best first on the board's order, on both orders."""
    redis, default_keys = board
    keys = Keys(default_keys.prefix).board("order", asc=asc)
    await redis.set(keys.ready, "1")
    best, middle, last = (80_000, 85_000, 90_000) if asc else (90_000, 85_000, 80_000)
    first = Change(_user(1), best, 1, T0 + 10, T0 + 11, "First")
    second = Change(_user(2), middle, 1, T0 + 20, T0 + 21, "Second")
    third = Change(_user(3), last, 1, T0 + 30, T0 + 31, "Third")
    tied = Change(_user(4), middle, 1, T0 + 40, T0 + 41, "Tied")

    moves = await _apply_with_moves(redis, keys, [first, second, third, tied])

    assert [(m.user_id, m.new_rank, m.score, m.next_score) for m in moves.moves] == [
        (first.user_id, 1, best, None),
        (second.user_id, 2, middle, best),
        (third.user_id, 3, last, middle),
        (tied.user_id, 2, middle, best),
    ]
    assert moves.moves[-1].passed == (third.user_id,)
    expected = {
        first.user_id: RankState(1, best, 4, None),
        second.user_id: RankState(2, middle, 4, best),
        tied.user_id: RankState(2, middle, 4, best),
        third.user_id: RankState(4, last, 4, middle),
        _user(9): RankState(0, 0, 4, None),  # no stored state: not ranked
    }
    hub = RankHub(redis, keys, RankSettings())
    assert await hub.read(list(expected), cause="contract") == expected
    scripts = Scripts(redis).of(keys)
    for change in (first, second, third, tied):
        reply = await scripts.user_rank(
            keys=[keys.ranking, keys.users, keys.ready], args=[change.user_id, 0]
        )
        state = expected[change.user_id]
        assert (int(reply[2]), int(reply[3])) == (state.rank, state.score)
    members: Any = await redis.zrange(keys.ranking, 0, -1, withscores=True)
    assert [total_of(s, asc) for _, s in members] == [best, middle, middle, last]


def test_only_the_shared_library_defines_the_value_helpers() -> None:
    """One Lua owner of the stored formats: the scripts of both services use
    common/lua/redis_values.lua (prepended by common.redis_scripts) and define none of its
    names themselves."""
    names = set(re.findall(r"^local (?:function )?(\w+)", LIBRARY.read_text(), re.MULTILINE))
    assert {"score_of", "parse_state", "read_state", "member_of", "user_of"} <= names
    scripts = [
        path
        for package in ("leaderboard_service", "stream_service", "common")
        for path in sorted((ROOT / package / "lua").glob("*.lua"))
        if path != LIBRARY
    ]
    assert {p.parent.parent.name for p in scripts} == {"leaderboard_service", "stream_service"}
    for path in scripts:
        defined = set(re.findall(r"\blocal (?:function )?(\w+)", path.read_text()))
        assert defined & names == set(), path.relative_to(ROOT)


def test_a_snapshot_names_its_period_and_one_without_is_period_1() -> None:
    top = Top10(5, 6, [Entry(1, _user(1), "A", 10)], period=3)
    assert decode_top10(encode_top10(top)) == top
    assert decode_top10(b'{"seq":5,"ts":6,"entries":[]}').period == 1
    assert stored_top10(b"[]", b"5", b"6") == Top10(5, 6, [], period=1)


def test_the_cjson_empty_array_is_no_entries() -> None:
    assert decode_entries(b"{}") == []
    assert decode_entries(b"[]") == []
    assert decode_top10(b'{"seq":3,"ts":4,"entries":{}}') == Top10(3, 4, [])
    assert encode_entries([]) == b"[]"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"ts":1,"entries":[]}',
        b'{"seq":"x","ts":1,"entries":[]}',
        b'{"seq":1,"ts":1}',
        b'{"seq":1,"ts":1,"entries":"abc"}',
        b'{"seq":1,"ts":1,"entries":{"a":1}}',
        b'{"seq":1,"ts":1,"entries":[[1,"u","n"]]}',
        b'{"seq":1,"ts":1,"entries":[[1,"u","n","many"]]}',
    ],
)
def test_a_malformed_snapshot_is_refused(payload: bytes) -> None:
    with pytest.raises(MalformedValue):
        decode_top10(payload)


@pytest.mark.parametrize(
    "raw",
    [b"", b"1|2|0|name", b"x|00000000000000001|0|n", b"1|00000000000000001|2|n", b"1|0|0"],
)
def test_a_malformed_user_state_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedValue):
        parse_user_state(raw)


def test_a_user_state_keeps_a_name_with_bars_and_newlines() -> None:
    state = UserState(12, 5, False, "a|b\nc")
    assert state.encode() == "12|00000000000000005|0|a|b\nc"
    assert parse_user_state(state.encode().encode()) == state


@pytest.mark.parametrize("raw", [b"", b"123:user", b"00000000000000001:", b"nocolon"])
def test_a_malformed_member_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedValue):
        parse_member(raw)
