-- Boards and periods (issue 17, DESIGN decision 11). A board is defined by its sort order, how a
-- player's entries combine, an optional reset schedule (a 5-field cron expression in an IANA
-- time zone), an optional season and how many closed periods to keep. Every score belongs to a
-- board and to the period open when it was written; a board without a schedule has one endless
-- period. Rows written before this migration belong to period 1.

ALTER TABLE boards
    ADD COLUMN sort_order   text NOT NULL DEFAULT 'desc' CHECK (sort_order IN ('desc', 'asc')),
    ADD COLUMN combine      text NOT NULL DEFAULT 'sum' CHECK (combine IN ('sum', 'best', 'latest')),
    ADD COLUMN reset_cron   text CHECK (reset_cron IS NULL OR char_length(reset_cron) <= 120),
    ADD COLUMN time_zone    text NOT NULL DEFAULT 'UTC' CHECK (char_length(time_zone) <= 64),
    ADD COLUMN season_start timestamptz,
    ADD COLUMN season_end   timestamptz,
    -- Closed periods whose standings are kept (0: all of them).
    ADD COLUMN keep_periods integer NOT NULL DEFAULT 0 CHECK (keep_periods >= 0),
    -- Bounds of a value reported for a best/latest board.
    ADD COLUMN min_value    bigint,
    ADD COLUMN max_value    bigint,
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT boards_season CHECK (season_end IS NULL OR season_start IS NULL
                                        OR season_start < season_end),
    ADD CONSTRAINT boards_bounds CHECK (min_value IS NULL OR max_value IS NULL
                                        OR min_value <= max_value);

-- A board's periods: [starts_at, ends_at) in UTC, ends_at NULL for an endless one. The next
-- period's row exists before the current one ends (leaderboard_service's scheduler), so a reset
-- never blocks a write. closed_at is set once, by the transaction that froze the standings.
CREATE TABLE board_periods (
    board_id  text NOT NULL REFERENCES boards (id),
    period    integer NOT NULL CHECK (period >= 1),
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz,
    closed_at timestamptz,
    -- Ranked entries frozen when it closed.
    entries   integer,
    PRIMARY KEY (board_id, period),
    CHECK (ends_at IS NULL OR starts_at < ends_at),
    CHECK ((closed_at IS NULL) = (entries IS NULL))
);
INSERT INTO board_periods (board_id, period, starts_at)
SELECT id, 1, least(created_at, coalesce((SELECT min(created_at) FROM user_actions), created_at))
FROM boards;

-- The archive: a closed period's final standings, ranked exactly as the live board ranked
-- (competition rank; ties by the time the score was reached, then user id), banned users
-- excluded. position is the 1-based place in that order (what pages are read by).
CREATE TABLE period_standings (
    board_id     text NOT NULL,
    period       integer NOT NULL,
    position     integer NOT NULL,
    rank         integer NOT NULL,
    user_id      uuid NOT NULL REFERENCES users (id),
    display_name text NOT NULL,
    score        bigint NOT NULL,
    reached_at   timestamptz NOT NULL,
    PRIMARY KEY (board_id, period, position),
    UNIQUE (board_id, period, user_id),
    FOREIGN KEY (board_id, period) REFERENCES board_periods (board_id, period)
);

-- Scores and ledger rows name their period. total == SUM(points) per user, board and period.
ALTER TABLE user_scores ADD COLUMN period integer NOT NULL DEFAULT 1;
ALTER TABLE user_scores DROP CONSTRAINT user_scores_pkey;
ALTER TABLE user_scores ADD PRIMARY KEY (board_id, period, user_id);
DROP INDEX user_scores_rank;
CREATE INDEX user_scores_rank ON user_scores (board_id, period, total DESC, reached_at, user_id)
    WHERE version > 0;
DROP INDEX user_scores_updated;
CREATE INDEX user_scores_updated ON user_scores (board_id, period, updated_at);

ALTER TABLE user_actions ADD COLUMN period integer NOT NULL DEFAULT 1;

-- Outbox rows of other kinds than score changes: a period_closed row's payload is a
-- scoreboard.events.v1.PeriodClosed, published on the board's period stream.
ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'score'
    CHECK (kind IN ('score', 'period_closed'));
