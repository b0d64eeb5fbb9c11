"""The Redis key layout, shared by every service that touches Redis.

All keys of one leaderboard share the hash tag {lb:<board>} so multi-key scripts run on Redis
Cluster. A board's ranking keys belong to one period (DESIGN decision 11): period 1 keeps the
board's original names ({lb:<board>}:z, ...; an upgrade needs no rebuild), period N > 1 puts
`p<N>:` after the tag ({lb:<board>}:p<N>:z, ...), so a reset starts an empty live board at once and
the old keys are left to expire. The stream, the dead letters and the channels are the board's.
Every key and channel starts with the deployment's prefix (a test run uses its own).
What is stored under each key (member, state and snapshot encodings) is owned by
common/redis_values.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardKeys:
    prefix: str
    board: str
    period: int = 1
    # A lower-is-better board (sort order `asc`): how its ranking's scores are encoded
    # (common/redis_values.ranking_score) and which scripts read it. Not part of the names.
    asc: bool = False

    def _board_key(self, name: str) -> str:
        return f"{self.prefix}{{lb:{self.board}}}:{name}"

    def _key(self, name: str) -> str:
        """A key of this period."""
        if self.period == 1:
            return self._board_key(name)
        return self._board_key(f"p{self.period}:{name}")

    def of_period(self, period: int) -> BoardKeys:
        """The same board's keys for another period."""
        if period < 1:
            raise ValueError(f"period must be at least 1, not {period}")
        return BoardKeys(self.prefix, self.board, period, self.asc)

    @property
    def period_keys(self) -> tuple[str, ...]:
        """Every key of this period (what expires after a period closed)."""
        return (
            self.ranking,
            self.users,
            self.top,
            self.meta,
            self.ready,
            self.touched,
            self.rebuild_ranking,
            self.rebuild_users,
        )

    @property
    def ranking(self) -> str:
        """ZSET: score = -total (the total on an `asc` board), member = '<reached time µs, 17
        digits>:<user id>'."""
        return self._key("z")

    @property
    def users(self) -> str:
        """HASH user id -> '<version>|<reached µs>|<excluded 0/1>|<display name>'."""
        return self._key("u")

    @property
    def top(self) -> str:
        """STRING: JSON of the current top 10 entries (what the change detector compares),
        [[rank, user id, name, score], ...]."""
        return self._key("top")

    @property
    def meta(self) -> str:
        """HASH: seq (top-10 sequence number), ts (commit µs of the newest change in it)."""
        return self._key("meta")

    @property
    def ready(self) -> str:
        """STRING: present once the ranking holds every user of PostgreSQL."""
        return self._key("ready")

    @property
    def rebuild_lock(self) -> str:
        return self._key("rebuild-lock")

    @property
    def touched(self) -> str:
        """SET of users changed while a rebuild runs (merged into the rebuilt ranking)."""
        return self._key("touched")

    @property
    def rebuild_ranking(self) -> str:
        return self._key("tmp:z")

    @property
    def rebuild_users(self) -> str:
        return self._key("tmp:u")

    @property
    def events(self) -> str:
        """STREAM of ScoreUpdated events (field 'e' = protobuf bytes), of every period."""
        return self._board_key("events")

    @property
    def period_events(self) -> str:
        """STREAM of PeriodClosed events (field 'c' = protobuf bytes, MAXLEN ~), for whoever
        acts at the end of a period (hooks, rewards)."""
        return self._board_key("periods")

    @property
    def tiers(self) -> str:
        """STRING: the board's tier definitions as leaderboard_service last read them from
        PostgreSQL (common.tiers.encode_copy), rewritten by its period scheduler on a change and
        every minute; what stream_service's rank hub reads. No TTL."""
        return self._board_key("tiers")

    @property
    def dead_letters(self) -> str:
        return self._board_key("dead")

    @property
    def channel(self) -> str:
        """Pub/sub channel of top-10 snapshots: JSON {"seq", "ts", "entries"}."""
        return f"{self.prefix}lb:{self.board}:top10"

    @property
    def rank_channel(self) -> str:
        """Pub/sub channel of rank moves (JSON, see redis_values.decode_moves): what each
        applied batch changed for the users it moved, and the few users each one passed. Inside
        the board's hash tag: the apply script declares it as a key so it may PUBLISH on it on
        Redis Cluster too."""
        return self._board_key("ranks")


@dataclass(frozen=True)
class Keys:
    prefix: str

    def board(self, board: str, period: int = 1, *, asc: bool = False) -> BoardKeys:
        return BoardKeys(self.prefix, board, asc=asc).of_period(period)

    def denied_token(self, jti: str) -> str:
        """STRING with a TTL per revoked jti: read only by verifiers of releases before the
        revocation mirror (rolling upgrades); still written."""
        return f"{self.prefix}auth:deny:{jti}"

    def denied_session(self, sid: str) -> str:
        """Like denied_token, per revoked login session."""
        return f"{self.prefix}auth:deny-sid:{sid}"

    # The revocation list's keys share the hash tag {auth} so its scripts run on Redis Cluster.

    @property
    def denylist_loaded(self) -> str:
        """STRING: present once `revoked` holds every revocation of PostgreSQL (set in the same
        atomic step as the reload that built it)."""
        return f"{self.prefix}{{auth}}:deny-loaded"

    @property
    def revoked(self) -> str:
        """HASH 't:<jti>' / 's:<sid>' -> expiry (epoch ms), plus the field '_' (so a lost hash is
        noticed): every revocation in force, read whole by each verifier's mirror. No TTL."""
        return f"{self.prefix}{{auth}}:revoked"

    @property
    def revoked_staging(self) -> str:
        """HASH the keeper builds a reload in before it replaces `revoked`."""
        return f"{self.prefix}{{auth}}:revoked-tmp"

    @property
    def revocation_feed(self) -> str:
        """STREAM of changes to `revoked` (MAXLEN ~): {'f': field, 'x': expiry ms} per
        revocation, {'reload': '1'} after a reload. Verifiers follow it with XREAD."""
        return f"{self.prefix}{{auth}}:revocations"

    def rate_limit(self, name: str, subject: str) -> str:
        return f"{self.prefix}rl:{name}:{subject}"

    def ws_ticket(self, ticket_id: str) -> str:
        return f"{self.prefix}ws-ticket:{ticket_id}"
