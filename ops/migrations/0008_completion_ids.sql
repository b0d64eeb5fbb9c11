-- Exactly once when a COMMIT's outcome is unknown (DESIGN decision 13): every completion gets an
-- identity when it arrives, recorded in its ledger row. When the connection is lost during
-- COMMIT, score_service looks the identities up on a fresh connection and answers those that
-- landed from their rows; the others are written again, and this unique index refuses a second
-- row for a completion whose first transaction committed after the look-up. Rows written
-- before this migration (and admin entries) have none. The state after a row (total, version)
-- is the running sum and count of the user's ledger up to it, so nothing else is stored.
ALTER TABLE user_actions ADD COLUMN completion_id uuid;
CREATE UNIQUE INDEX user_actions_completion ON user_actions (completion_id)
    WHERE completion_id IS NOT NULL;
