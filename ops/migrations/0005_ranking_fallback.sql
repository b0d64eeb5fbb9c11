-- leaderboard_service's PostgreSQL fallback counts ranked users as "users with a score" minus
-- "banned users with a score": counts over the partial index user_scores_rank alone (index-only
-- scans), and this tiny index to find the banned ones, instead of joining every user.
CREATE INDEX users_banned ON users (id) WHERE banned;
