-- One completion counts on several boards (issue 17). An action of the catalog always counts on
-- its own board (actions.board_id, the default board) and also on the boards listed here, in
-- the same transaction, each with its own ledger row, total and event in the period open on
-- that board. Boards are checked to exist when an admin sets the list (score_service).
ALTER TABLE actions
    ADD COLUMN boards text[] NOT NULL DEFAULT '{}' CHECK (cardinality(boards) <= 16);

-- A value reported by a trusted caller (a game server's lap time) for a `best` or `latest`
-- board; points stay the change of the total, so total == SUM(points) per user, board and
-- period holds on every board, whatever it combines.
ALTER TABLE user_actions ADD COLUMN value bigint;

-- A completion has one ledger row per board it counts on: its identity is unique per board.
DROP INDEX user_actions_completion;
CREATE UNIQUE INDEX user_actions_completion ON user_actions (completion_id, board_id)
    WHERE completion_id IS NOT NULL;

-- The PostgreSQL fallback of a lower-is-better board ranks by total ascending.
CREATE INDEX user_scores_rank_asc ON user_scores (board_id, period, total, reached_at, user_id)
    WHERE version > 0;
