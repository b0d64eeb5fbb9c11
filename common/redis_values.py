"""The values stored under the leaderboard's Redis keys: the one Python owner of their format.

`common/redis_keys.py` says where things live; this module says what is stored there. The Lua
scripts in leaderboard_service/lua/ are the writers (they apply events atomically); they and
stream_service's ranks.lua read and write through the shared Lua library
common/lua/redis_values.lua, this module's Lua twin (common/redis_scripts.py prepends it). Every
Python reader, and every Python writer that must produce the same bytes (the rebuild, reconcile,
test publishers), encodes and decodes through here. tests/common/test_redis_values.py runs the
real scripts and decodes what they wrote with these functions.

- Ranking ZSET: score = -total, member = '<reached µs, 17 digits>:<user id>', so ZRANGE orders by
  total descending, then the time the total was reached, then user id (DESIGN decision 5). On a
  lower-is-better board (sort order `asc`) the score is the total itself, so ZRANGE orders by
  total ascending, with the same tie rule; the scripts are loaded once per order
  (common/redis_scripts.py, `local ASC`) and decode scores the same way.
- Users HASH: user id -> '<version>|<reached µs, 17 digits>|<excluded 0/1>|<display name>'.
- Top-10 STRING: the entries JSON `[[rank, user id, name, score], ...]`, scores as strings so
  cjson keeps every digit; the meta HASH holds its `seq` and `ts` (commit µs of the newest change)
  and, on a period after the first, `period` (the period the keys belong to).
- Pub/sub message: `{"seq": N, "ts": N, "entries": <the same entries JSON>, "period": N}`;
  `period` is absent from snapshots of writers that predate periods (read as 1).
- Pages and nearby entries of the query scripts: rows with a fifth item, the reached time.
- Rank moves (the board's rank channel, published by apply.lua for each applied batch):
  `{"n": ranked users, "moves": [[user, name, old rank, new rank, score, nearest better score
  or "", commit µs, [passed user ids]], ...]}`; a rank of 0 means not ranked.
Lua's cjson writes an empty array as `{}`; the decoders read it as no entries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

REACHED_DIGITS = 17
SEQ_FIELD = "seq"  # of the meta HASH
TS_FIELD = "ts"  # of the meta HASH
PERIOD_FIELD = "period"  # of the meta HASH and the published snapshot

_STATE = re.compile(rf"(\d+)\|(\d{{{REACHED_DIGITS}}})\|([01])\|(.*)", re.DOTALL)
_REACHED = re.compile(rf"\d{{{REACHED_DIGITS}}}")


class MalformedValue(ValueError):
    """A stored or published value that is not in the documented format."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# Ranking ZSET


def reached_key(reached_us: int) -> str:
    """Fixed-width time, so members of equal score sort by the time the score was reached."""
    return f"{reached_us:0{REACHED_DIGITS}d}"


def ranking_member(user_id: str, reached_us: int) -> str:
    return f"{reached_key(reached_us)}:{user_id}"


@dataclass(frozen=True)
class Member:
    user_id: str
    reached_us: int


def parse_member(raw: bytes | str) -> Member:
    reached, sep, user = _text(raw).partition(":")
    if not sep or not user or not _REACHED.fullmatch(reached):
        raise MalformedValue(f"not a ranking member: {raw!r}")
    return Member(user, int(reached))


def ranking_score(total: int, asc: bool = False) -> int:
    """The ZSET score of a total: negated on a higher-is-better board, the total itself on a
    lower-is-better one (`asc`), so ascending order is best first on both."""
    return total if asc else -total


def total_of(score: float, asc: bool = False) -> int:
    """The total of a ZSET score."""
    return int(score) if asc else int(-score)


def above(total: int, asc: bool = False) -> str:
    """ZCOUNT max bound: from '-inf' to it counts the users whose total is better than `total`
    (higher, or lower on an `asc` board)."""
    return f"({ranking_score(total, asc)}"


# Users HASH


@dataclass(frozen=True)
class UserState:
    version: int
    reached_us: int
    excluded: bool
    name: str

    def encode(self) -> str:
        return encode_user_state(self.version, self.reached_us, self.excluded, self.name)


def state_head(version: int, reached_us: int, excluded: bool) -> str:
    """'<version>|<reached>|<excluded>': a state without the name (what compare.lua checks)."""
    return f"{version}|{reached_key(reached_us)}|{1 if excluded else 0}"


def encode_user_state(version: int, reached_us: int, excluded: bool, name: str) -> str:
    return f"{state_head(version, reached_us, excluded)}|{name}"


def parse_user_state(raw: bytes | str) -> UserState:
    """Reads exactly what redis_values.lua's parse_state reads; MalformedValue otherwise."""
    match = _STATE.fullmatch(_text(raw))
    if match is None:
        raise MalformedValue(f"not a user state: {raw!r}")
    version, reached, excluded, name = match.groups()
    return UserState(int(version), int(reached), excluded == "1", name)


# Entries JSON (stored top 10, published snapshots, query pages)


@dataclass(frozen=True)
class Entry:
    rank: int
    user_id: str
    username: str
    score: int
    # When the user reached this score (µs since the epoch): the tie-breaker. 0 when the
    # encoding carries no reached time (the top 10 stored and published).
    reached_us: int = 0


def _entry(row: Any) -> Entry:
    if not isinstance(row, list) or len(row) not in (4, 5):
        raise MalformedValue(f"not an entry: {row!r}")
    reached = int(row[4]) if len(row) == 5 else 0
    return Entry(int(row[0]), str(row[1]), str(row[2]), int(row[3]), reached)


def _entries(rows: Any) -> list[Entry]:
    if rows == {}:  # cjson writes an empty array as {}
        return []
    if not isinstance(rows, list):
        raise MalformedValue(f"not a list of entries: {rows!r}")
    try:
        return [_entry(row) for row in rows]
    except (TypeError, ValueError) as exc:
        raise MalformedValue(str(exc)) from exc


def _json(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedValue(str(exc)) from exc


def decode_entries(raw: bytes | str) -> list[Entry]:
    return _entries(_json(raw))


def encode_entries(entries: Sequence[Entry], *, with_reached: bool = False) -> bytes:
    """The JSON the scripts write (byte for byte for names without '/', which cjson escapes)."""
    rows: list[list[Any]] = []
    for e in entries:
        row: list[Any] = [e.rank, e.user_id, e.username, str(e.score)]
        if with_reached:
            row.append(reached_key(e.reached_us))
        rows.append(row)
    return orjson.dumps(rows)


@dataclass(frozen=True)
class Top10:
    """A top-10 snapshot: its sequence number, the commit time (µs) of its newest change, its
    entries (without reached times) and the board's period it shows."""

    seq: int
    ts_us: int
    entries: list[Entry]
    period: int = 1


def _period(value: Any) -> int:
    """A snapshot's period: absent (a writer before periods) means 1."""
    if value in (None, b"", ""):
        return 1
    period = int(value)
    if period < 1:
        raise ValueError(f"period {period}")
    return period


def decode_top10(payload: bytes | str) -> Top10:
    """A snapshot as published on the board's channel."""
    data = _json(payload)
    if not isinstance(data, dict):
        raise MalformedValue(f"not a snapshot: {data!r}")
    try:
        seq, ts = int(data[SEQ_FIELD]), int(data[TS_FIELD])
        period = _period(data.get(PERIOD_FIELD))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedValue(f"snapshot without a valid {exc}") from exc
    return Top10(seq, ts, _entries(data.get("entries")), period)


def encode_top10(top: Top10) -> bytes:
    """The snapshot as the scripts publish it (for test publishers)."""
    body = encode_entries(top.entries).decode()
    return f'{{"seq":{top.seq},"ts":{top.ts_us},"entries":{body},"period":{top.period}}}'.encode()


def stored_top10(
    body: bytes | str | None,
    seq: bytes | str | None,
    ts: bytes | str | None,
    period: bytes | str | None = None,
) -> Top10 | None:
    """The stored snapshot from the top key and the meta fields (`period` from the meta HASH,
    absent on period 1 keys written before periods); None before the first one."""
    if body is None or seq is None:
        return None
    entries = decode_entries(body)
    try:
        return Top10(int(seq), int(ts or 0), entries, _period(period))
    except ValueError as exc:
        raise MalformedValue(f"stored snapshot meta: {exc}") from exc


# Rank moves (the board's rank channel)


@dataclass(frozen=True)
class Move:
    """What one applied event did to its user's rank. Ranks are competition ranks, 0 when not
    ranked (before: a new or excluded user; after: excluded)."""

    user_id: str
    name: str
    old_rank: int
    new_rank: int
    score: int
    # The nearest better total than the user's (None at rank 1 or when not ranked).
    next_score: int | None
    commit_us: int
    # Users it passed, right below its new position, nearest first (at most the apply
    # script's MAX_PASSED).
    passed: tuple[str, ...]


@dataclass(frozen=True)
class Moves:
    ranked: int
    moves: list[Move]


def _move(row: Any) -> Move:
    if not isinstance(row, list) or len(row) != 8:
        raise MalformedValue(f"not a rank move: {row!r}")
    user, name, old, new, score, nxt, commit, passed = row
    if passed == {}:
        passed = []
    if not isinstance(passed, list):
        raise MalformedValue(f"not a list of users: {passed!r}")
    return Move(
        str(user),
        str(name),
        int(old),
        int(new),
        int(score),
        int(nxt) if nxt not in ("", None) else None,
        int(commit),
        tuple(str(p) for p in passed),
    )


def decode_moves(payload: bytes | str) -> Moves:
    data = _json(payload)
    if not isinstance(data, dict):
        raise MalformedValue(f"not rank moves: {data!r}")
    rows = data.get("moves")
    if rows == {}:
        rows = []
    if not isinstance(rows, list):
        raise MalformedValue(f"not rank moves: {data!r}")
    try:
        return Moves(int(data["n"]), [_move(row) for row in rows])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedValue(f"rank moves: {exc}") from exc


def encode_moves(moves: Moves) -> bytes:
    """The JSON apply.lua publishes (for test publishers)."""
    return orjson.dumps(
        {
            "n": moves.ranked,
            "moves": [
                [
                    m.user_id,
                    m.name,
                    m.old_rank,
                    m.new_rank,
                    str(m.score),
                    "" if m.next_score is None else str(m.next_score),
                    str(m.commit_us),
                    list(m.passed),
                ]
                for m in moves.moves
            ],
        }
    )
