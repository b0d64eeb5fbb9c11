-- Admin acts in the ledger (issue 9). A ban or an unban is a 0-point ledger entry, so every
-- change of a user's ranked state has a version: total == SUM(points) and version == the number
-- of ledger rows still hold for every user, and the outbox event of a ban (excluded = true)
-- orders correctly against the user's completions.
ALTER TABLE user_actions DROP CONSTRAINT user_actions_kind_check;
ALTER TABLE user_actions ADD CONSTRAINT user_actions_kind_check
    CHECK (kind IN ('action', 'void', 'adjust', 'ban', 'unban'));
-- A void names the entry it compensates; admin entries say why; bans move no points.
ALTER TABLE user_actions ADD CONSTRAINT user_actions_admin_entries CHECK (
    (kind = 'void') = (voids IS NOT NULL)
    AND (kind NOT IN ('void', 'adjust', 'ban', 'unban') OR reason IS NOT NULL)
    AND (kind NOT IN ('ban', 'unban') OR points = 0)
    AND (kind <> 'adjust' OR points <> 0)
);

-- Admin listings: one user's ledger, the audit log by target, open anomalies.
CREATE INDEX user_actions_user_id ON user_actions (user_id, id);
CREATE INDEX audit_log_target ON audit_log (target, id);
CREATE INDEX score_anomalies_open ON score_anomalies (id) WHERE reviewed_at IS NULL;
