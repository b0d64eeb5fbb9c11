-- score_service: bounded reads for the rules and anomaly checks, and anomaly review.

-- The score transaction reads one user's recent completions (today's points and count, the last
-- completion of this action and of any action). This index makes that a range scan over the
-- user's last day instead of the user's whole history.
CREATE INDEX user_actions_user_recent ON user_actions (board_id, user_id, created_at)
    WHERE kind = 'action';

-- Admins list the open anomalies, newest first, and one user's anomalies.
CREATE INDEX score_anomalies_open ON score_anomalies (board_id, id DESC)
    WHERE reviewed_at IS NULL;
CREATE INDEX score_anomalies_user ON score_anomalies (board_id, user_id, id DESC);
