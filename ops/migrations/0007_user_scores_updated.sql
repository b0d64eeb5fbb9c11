-- leaderboard_service's periodic check compares the Redis version of every user whose score
-- changed since its previous check (an event lost after XADD, or an acknowledged write lost in a
-- Redis failover, is seen there): a range scan on this index instead of a scan of the board. It
-- costs every score change one more index entry.
CREATE INDEX user_scores_updated ON user_scores (board_id, updated_at);
