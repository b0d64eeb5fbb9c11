-- Counters that make a completion's rule checks O(1) however often the user played before:
-- the daily limit, the cooldown and the anomaly checks read one row per user and one per
-- (user, action) instead of aggregating the ledger. They change in the score transaction with
-- the ledger row, under the user's row lock; the ledger stays the truth they are derived from.

CREATE TABLE action_stats (
    board_id  text NOT NULL REFERENCES boards (id),
    user_id   uuid NOT NULL REFERENCES users (id),
    action_id text NOT NULL REFERENCES actions (id),
    -- The UTC day day_count counts.
    day       date NOT NULL,
    day_count integer NOT NULL CHECK (day_count >= 0),
    -- The last completion, whatever its day (a cooldown may span midnight).
    last_at   timestamptz NOT NULL,
    PRIMARY KEY (board_id, user_id, action_id)
);

ALTER TABLE user_scores
    ADD COLUMN day date,
    ADD COLUMN day_points bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_action_at timestamptz,
    ADD COLUMN last_action_id text;

INSERT INTO action_stats (board_id, user_id, action_id, day, day_count, last_at)
SELECT board_id, user_id, action_id, day,
       count(*) FILTER (WHERE day = last_day), max(created_at)
FROM (
    SELECT board_id, user_id, action_id, day, created_at,
           max(day) OVER (PARTITION BY board_id, user_id, action_id) AS last_day
    FROM user_actions WHERE kind = 'action'
) a
WHERE day = last_day
GROUP BY board_id, user_id, action_id, day;

UPDATE user_scores s
SET day = l.day, day_points = l.points, last_action_at = l.last_at, last_action_id = l.last_action
FROM (
    SELECT DISTINCT ON (board_id, user_id) board_id, user_id, day, created_at AS last_at,
           action_id AS last_action,
           sum(points) OVER (PARTITION BY board_id, user_id, day) AS points
    FROM user_actions WHERE kind = 'action'
    ORDER BY board_id, user_id, created_at DESC, id DESC
) l
WHERE s.board_id = l.board_id AND s.user_id = l.user_id;

-- The rules no longer scan a user's ledger rows, so these indexes only cost every completion
-- two more index insertions. (The unique slot index stays: it is the database's own guard of
-- the daily limit; admins list a ledger through user_actions_user_id.)
DROP INDEX user_actions_user_action;
DROP INDEX user_actions_user_recent;
