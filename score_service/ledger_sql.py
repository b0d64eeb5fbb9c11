"""The statements of the score transaction (score_service.ledger), each set-based over a group
of completions, and the read StartAction shares with it (score_service.tickets). Their rows are
decoded by score_service.ledger_rows."""

from __future__ import annotations

from common.boards import BOARD_COLUMNS, CURRENT_PERIOD_SQL
from score_service.catalog import COLUMNS
from score_service.outbox import INSERT_BOARDS_SQL, NOTIFY_BOARDS_SQL

# The boards the group's completions count on (the catalog's board and each action's further
# boards), each with its period open at %(at)s locked FOR SHARE: common.boards.CURRENT_PERIOD_SQL
# for every board at once (its text, so the two stay in step). The period is locked before any
# score row, as the ban does, while a close locks it FOR UPDATE before reading the scores: a
# write into a period commits before its freeze or goes to the next period.
BOARDS_SQL = (
    "SELECT id, boards FROM actions WHERE board_id = %(board)s AND id = ANY(%(actions)s::text[]);"
    f" SELECT {BOARD_COLUMNS}, p.period FROM boards b LEFT JOIN LATERAL"
    f" ({CURRENT_PERIOD_SQL.replace('%(board)s', 'b.id')}) p ON true"
    " WHERE b.id = %(board)s OR b.id IN (SELECT unnest(boards) FROM actions"
    " WHERE board_id = %(board)s AND id = ANY(%(actions)s::text[])) ORDER BY b.id"
)
# Lock order everywhere: the periods (above), the score rows in (user, board, period) order,
# then the user row (FOR SHARE OF u: a completion waiting behind a ban re-reads users.banned once
# the ban commits; an unlocked joined row would keep its stale value).
LOCK_SQL = (
    "SELECT s.board_id, s.period, s.user_id::text, u.display_name, u.banned, s.total, s.version,"
    " s.reached_at, s.day, s.day_points, s.last_action_at, s.last_action_id"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " JOIN unnest(%(l_boards)s::text[], %(l_periods)s::int[], %(l_users)s::uuid[])"
    " AS t(board_id, period, user_id)"
    " ON s.board_id = t.board_id AND s.period = t.period AND s.user_id = t.user_id"
    " ORDER BY s.user_id, s.board_id, s.period FOR UPDATE OF s FOR SHARE OF u"
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
# The ledger rows, the totals and the counters in one statement, over every board and period
# the group counts on. Totals, versions and counts are absolute values computed under the locks;
# the times come from the new ledger rows (a 0-point row does not move the tie-breaker
# reached_at). The rule counters (day, day_points, last action; action_stats) are the catalog
# board's, %(board)s: the limits are about the action, not the board.
_SAME_ROW = "e.board_id = s.board_id AND e.period = s.period AND e.user_id = s.user_id"
WRITE_SQL = (
    "WITH e AS (INSERT INTO user_actions (board_id, period, user_id, kind, action_id, points,"
    "  value, day, slot, actor, path, request_id, completion_id)"
    "  SELECT t.board_id, t.period, t.user_id, 'action', t.action_id, t.points, t.value,"
    "  %(day)s, t.slot, t.actor, t.path, t.request_id, t.completion_id"
    "  FROM unnest(%(boards)s::text[], %(periods)s::int[], %(users)s::uuid[],"
    "  %(actions)s::text[], %(points)s::bigint[], %(values)s::bigint[], %(slots)s::int[],"
    "  %(actors)s::text[], %(paths)s::text[], %(request_ids)s::text[],"
    "  %(completion_ids)s::uuid[]) WITH ORDINALITY AS t(board_id, period, user_id, action_id,"
    "  points, value, slot, actor, path, request_id, completion_id, n)"
    "  ORDER BY t.n"
    "  RETURNING board_id, period, user_id, action_id, slot, id, created_at, points),"
    " u AS (UPDATE user_scores s SET total = t.total, version = t.version,"
    f"  reached_at = coalesce((SELECT max(e.created_at) FROM e WHERE {_SAME_ROW}"
    "   AND e.points <> 0), s.reached_at),"
    f"  updated_at = (SELECT max(e.created_at) FROM e WHERE {_SAME_ROW}),"
    "  day = CASE WHEN s.board_id = %(board)s THEN %(day)s ELSE s.day END,"
    "  day_points = CASE WHEN s.board_id = %(board)s THEN t.day_points ELSE s.day_points END,"
    "  last_action_at = CASE WHEN s.board_id = %(board)s"
    f"   THEN (SELECT max(e.created_at) FROM e WHERE {_SAME_ROW}) ELSE s.last_action_at END,"
    "  last_action_id = CASE WHEN s.board_id = %(board)s THEN t.last_action"
    "   ELSE s.last_action_id END"
    "  FROM unnest(%(u_boards)s::text[], %(u_periods)s::int[], %(u_users)s::uuid[],"
    "  %(u_totals)s::bigint[], %(u_versions)s::bigint[], %(u_day_points)s::bigint[],"
    "  %(u_last_action)s::text[])"
    "  AS t(board_id, period, user_id, total, version, day_points, last_action)"
    "  WHERE s.board_id = t.board_id AND s.period = t.period AND s.user_id = t.user_id),"
    " a AS (INSERT INTO action_stats (board_id, user_id, action_id, day, day_count, last_at)"
    "  SELECT %(board)s, t.user_id, t.action_id, %(day)s, t.day_count,"
    "  (SELECT max(e.created_at) FROM e WHERE e.board_id = %(board)s"
    "   AND e.user_id = t.user_id AND e.action_id = t.action_id)"
    "  FROM unnest(%(s_users)s::uuid[], %(s_actions)s::text[], %(s_counts)s::int[])"
    "  AS t(user_id, action_id, day_count)"
    "  ON CONFLICT (board_id, user_id, action_id) DO UPDATE SET day = EXCLUDED.day,"
    "  day_count = EXCLUDED.day_count, last_at = EXCLUDED.last_at)"
    " SELECT board_id, user_id::text, action_id, slot, id, created_at FROM e"
)
# Outbox rows with their notification, stored responses, keys of refused requests (so they may
# be retried) and anomaly flags: one statement (data-modifying CTEs always run).
FINISH_SQL = (
    f"WITH o AS ({INSERT_BOARDS_SQL}),"
    " k AS (UPDATE idempotency_keys i SET response = t.response"
    "  FROM unnest(%(k_callers)s::text[], %(k_keys)s::text[], %(k_responses)s::bytea[])"
    "  AS t(caller, key, response) WHERE i.caller = t.caller AND i.key = t.key),"
    " d AS (DELETE FROM idempotency_keys i"
    "  USING unnest(%(d_callers)s::text[], %(d_keys)s::text[]) AS t(caller, key)"
    "  WHERE i.caller = t.caller AND i.key = t.key),"
    " a AS (INSERT INTO score_anomalies (board_id, user_id, kind, detail, ledger_entry_id)"
    "  SELECT %(board)s, * FROM unnest(%(a_users)s::uuid[], %(a_kinds)s::text[],"
    "  %(a_details)s::jsonb[], %(a_entries)s::bigint[])),"
    " r AS (DELETE FROM user_scores s USING unnest(%(r_boards)s::text[], %(r_periods)s::int[],"
    "  %(r_users)s::uuid[]) AS t(board_id, period, user_id) WHERE s.board_id = t.board_id"
    "  AND s.period = t.period AND s.user_id = t.user_id AND s.version = 0)"
    f" {NOTIFY_BOARDS_SQL}"
)
# The completions among the given identities that landed (score_service.ledger_recovery), with
# a row per board each counted on, each with the state right after it: the user's total and
# version then are the running sum and count of the user's ledger in that board and period up
# to that row (rows of one user are written under the user's lock, so their ids follow the
# versions), and the anomalies flagged with it.
LANDED_SQL = (
    "SELECT a.completion_id::text, a.user_id::text, a.id, a.points, a.created_at,"
    " (SELECT sum(p.points) FROM user_actions p"
    "  WHERE p.user_id = a.user_id AND p.board_id = a.board_id AND p.period = a.period"
    "  AND p.id <= a.id),"
    " (SELECT count(*) FROM user_actions p"
    "  WHERE p.user_id = a.user_id AND p.board_id = a.board_id AND p.period = a.period"
    "  AND p.id <= a.id),"
    " (SELECT coalesce(jsonb_agg(jsonb_build_array(f.kind, f.detail) ORDER BY f.id), '[]')"
    "  FROM score_anomalies f WHERE f.ledger_entry_id = a.id),"
    " a.board_id, a.period, b.sort_order = 'asc'"
    " FROM user_actions a JOIN boards b ON b.id = a.board_id"
    " WHERE a.completion_id = ANY(%s::uuid[]) ORDER BY a.id"
)
# Lock the users, then read the catalog, the clock and the counters: one round trip.
LOCKED_READ_SQL = f"{LOCK_SQL}; {CONTEXT_SQL}; {STATS_SQL}"
# StartAction's read: the catalog, the clock and the counters, nothing locked.
START_READ_SQL = f"{CONTEXT_SQL}; {STATS_SQL}"
# A first completion creates the user's score row inside the transaction: the new row is locked
# by it until commit, and a concurrent creator waits. Rows created for users whose completions
# were all refused are removed again, so a refusal changes nothing.
CREATE_SQL = (
    "INSERT INTO user_scores (board_id, period, user_id) SELECT t.board_id, t.period, t.user_id"
    " FROM unnest(%(l_boards)s::text[], %(l_periods)s::int[], %(l_users)s::uuid[])"
    " AS t(board_id, period, user_id) JOIN users u ON u.id = t.user_id"
    " ORDER BY t.user_id, t.board_id, t.period ON CONFLICT DO NOTHING"
    " RETURNING board_id, period, user_id::text"
)
