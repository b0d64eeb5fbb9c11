"""The statements of the score transaction (score_service.ledger), each set-based over a group
of completions, and the read StartAction shares with it (score_service.tickets). Their rows are
decoded by score_service.ledger_rows."""

from __future__ import annotations

from score_service.catalog import COLUMNS
from score_service.outbox import INSERT_MANY_SQL, NOTIFY_MANY_SQL

# Lock order everywhere: the score row, then the user row (FOR SHARE OF u: a completion waiting
# behind a ban re-reads users.banned once the ban commits; an unlocked joined row would keep its
# stale value).
LOCK_SQL = (
    "SELECT s.user_id::text, u.display_name, u.banned, s.total, s.version, s.reached_at,"
    " s.day, s.day_points, s.last_action_at, s.last_action_id"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %(board)s AND s.user_id = ANY(%(users)s::uuid[])"
    " ORDER BY s.user_id FOR UPDATE OF s FOR SHARE OF u"
)
# Read in the same round trip as the lock (one query string, client-side parameters): each
# statement takes its own snapshot, so the statements after the lock see every change committed
# by the transactions it waited for. The clock, too, is read after the locks are held.
CONTEXT_SQL = (
    f"SELECT t.now, t.today, a.* FROM"
    " (SELECT clock_timestamp() AS now, (now() AT TIME ZONE 'UTC')::date AS today) t"
    f" LEFT JOIN (SELECT {COLUMNS} FROM actions WHERE board_id = %(board)s"
    " AND id = ANY(%(actions)s::text[])) a ON true"
)
STATS_SQL = (
    "SELECT s.user_id::text, s.action_id, s.day, s.day_count, s.last_at FROM action_stats s"
    " JOIN unnest(%(pair_users)s::uuid[], %(pair_actions)s::text[]) AS w(user_id, action_id)"
    " ON s.user_id = w.user_id AND s.action_id = w.action_id WHERE s.board_id = %(board)s"
)
# The ledger rows, the totals and the counters in one statement. Totals, versions and counts are
# absolute values computed under the locks; the times come from the new ledger rows (a 0-point
# completion does not move the tie-breaker reached_at).
WRITE_SQL = (
    "WITH e AS (INSERT INTO user_actions (board_id, user_id, kind, action_id, points, day, slot,"
    "  actor, path, request_id, completion_id)"
    "  SELECT %(board)s, t.user_id, 'action', t.action_id, t.points, %(day)s, t.slot, t.actor,"
    "  t.path, t.request_id, t.completion_id FROM unnest(%(users)s::uuid[], %(actions)s::text[],"
    "  %(points)s::bigint[], %(slots)s::int[], %(actors)s::text[], %(paths)s::text[],"
    "  %(request_ids)s::text[], %(completion_ids)s::uuid[]) WITH ORDINALITY"
    "  AS t(user_id, action_id, points, slot, actor, path, request_id, completion_id, n)"
    "  ORDER BY t.n"
    "  RETURNING user_id, action_id, slot, id, created_at, points),"
    " u AS (UPDATE user_scores s SET total = t.total, version = t.version,"
    "  reached_at = coalesce((SELECT max(e.created_at) FROM e"
    "   WHERE e.user_id = s.user_id AND e.points <> 0), s.reached_at),"
    "  updated_at = (SELECT max(e.created_at) FROM e WHERE e.user_id = s.user_id),"
    "  day = %(day)s, day_points = t.day_points,"
    "  last_action_at = (SELECT max(e.created_at) FROM e WHERE e.user_id = s.user_id),"
    "  last_action_id = t.last_action"
    "  FROM unnest(%(u_users)s::uuid[], %(u_totals)s::bigint[], %(u_versions)s::bigint[],"
    "  %(u_day_points)s::bigint[], %(u_last_action)s::text[])"
    "  AS t(user_id, total, version, day_points, last_action)"
    "  WHERE s.board_id = %(board)s AND s.user_id = t.user_id),"
    " a AS (INSERT INTO action_stats (board_id, user_id, action_id, day, day_count, last_at)"
    "  SELECT %(board)s, t.user_id, t.action_id, %(day)s, t.day_count,"
    "  (SELECT max(e.created_at) FROM e WHERE e.user_id = t.user_id AND e.action_id = t.action_id)"
    "  FROM unnest(%(s_users)s::uuid[], %(s_actions)s::text[], %(s_counts)s::int[])"
    "  AS t(user_id, action_id, day_count)"
    "  ON CONFLICT (board_id, user_id, action_id) DO UPDATE SET day = EXCLUDED.day,"
    "  day_count = EXCLUDED.day_count, last_at = EXCLUDED.last_at)"
    " SELECT user_id::text, action_id, slot, id, created_at FROM e"
)
# Outbox rows with their notification, stored responses, keys of refused requests (so they may
# be retried) and anomaly flags: one statement (data-modifying CTEs always run).
FINISH_SQL = (
    f"WITH o AS ({INSERT_MANY_SQL}),"
    " k AS (UPDATE idempotency_keys i SET response = t.response"
    "  FROM unnest(%(k_callers)s::text[], %(k_keys)s::text[], %(k_responses)s::bytea[])"
    "  AS t(caller, key, response) WHERE i.caller = t.caller AND i.key = t.key),"
    " d AS (DELETE FROM idempotency_keys i"
    "  USING unnest(%(d_callers)s::text[], %(d_keys)s::text[]) AS t(caller, key)"
    "  WHERE i.caller = t.caller AND i.key = t.key),"
    " a AS (INSERT INTO score_anomalies (board_id, user_id, kind, detail, ledger_entry_id)"
    "  SELECT %(board)s, * FROM unnest(%(a_users)s::uuid[], %(a_kinds)s::text[],"
    "  %(a_details)s::jsonb[], %(a_entries)s::bigint[])),"
    " r AS (DELETE FROM user_scores WHERE board_id = %(board)s"
    "  AND user_id = ANY(%(unused)s::uuid[]) AND version = 0)"
    f" {NOTIFY_MANY_SQL}"
)
# The completions among the given identities that landed (score_service.ledger_recovery), each
# with the state right after its row: the user's total and version then are the running sum and
# count of the user's ledger (in that board and period) up to that row (rows of one user are
# written under the user's lock, so their ids follow the versions), and the anomalies flagged
# with it.
LANDED_SQL = (
    "SELECT a.completion_id::text, a.user_id::text, a.id, a.points, a.created_at,"
    " (SELECT sum(p.points) FROM user_actions p"
    "  WHERE p.user_id = a.user_id AND p.board_id = a.board_id AND p.period = a.period"
    "  AND p.id <= a.id),"
    " (SELECT count(*) FROM user_actions p"
    "  WHERE p.user_id = a.user_id AND p.board_id = a.board_id AND p.period = a.period"
    "  AND p.id <= a.id),"
    " (SELECT coalesce(jsonb_agg(jsonb_build_array(f.kind, f.detail) ORDER BY f.id), '[]')"
    "  FROM score_anomalies f WHERE f.ledger_entry_id = a.id)"
    " FROM user_actions a WHERE a.board_id = %s AND a.completion_id = ANY(%s::uuid[])"
)
# Lock the users, then read the catalog, the clock and the counters: one round trip.
LOCKED_READ_SQL = f"{LOCK_SQL}; {CONTEXT_SQL}; {STATS_SQL}"
# StartAction's read: the catalog, the clock and the counters, nothing locked.
START_READ_SQL = f"{CONTEXT_SQL}; {STATS_SQL}"
# A first completion creates the user's score row inside the transaction: the new row is locked
# by it until commit, and a concurrent creator waits. Rows created for users whose completions
# were all refused are removed again, so a refusal changes nothing.
CREATE_SQL = (
    "INSERT INTO user_scores (board_id, user_id) SELECT %s, id FROM users"
    " WHERE id = ANY(%s::uuid[]) ORDER BY id ON CONFLICT DO NOTHING RETURNING user_id::text"
)
