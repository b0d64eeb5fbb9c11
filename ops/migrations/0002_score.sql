-- score_service: bounded reads for the rules and anomaly checks.

-- The score transaction reads one user's recent completions (today's points and count, the last
-- completion of this action and of any action). This index makes that a range scan over the
-- user's last day instead of the user's whole history.
CREATE INDEX user_actions_user_recent ON user_actions (board_id, user_id, created_at)
    WHERE kind = 'action';
