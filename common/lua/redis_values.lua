-- The leaderboard's stored values in Lua: the one Lua owner of their format, prepended (by
-- common/redis_scripts.py) to every script that reads or writes them, leaderboard_service's and
-- stream_service's alike. Their Python owner is common/redis_values.py (keep both in step;
-- tests/common/test_redis_values.py runs the scripts of both services and decodes what they
-- wrote and read).
-- Ranking ZSET: score = -total, member = '<reached µs, 17 digits>:<user id>', so ZRANGE 0..n
-- orders by total desc, then reached time asc, then user id asc (DESIGN decision 5). On a
-- lower-is-better board the score is the total itself (ASC, set by the loader in front of this
-- file: each script is loaded once per sort order), so ZRANGE orders by total asc, same ties.
-- Users HASH: user id -> '<version>|<reached µs, 17 digits>|<excluded 0/1>|<display name>'.

local REACHED_DIGITS = 17
local REACHED_PATTERN = '^' .. string.rep('%d', REACHED_DIGITS) .. '$'

-- Ranking members.
local function member_of(reached, user)
  return reached .. ':' .. user
end

local function user_of(member)
  return string.sub(member, REACHED_DIGITS + 2)
end

local function reached_of(member)
  return string.sub(member, 1, REACHED_DIGITS)
end

-- Ranking scores: -total (the total when ASC); Redis formats integers exactly ("%.17g", totals
-- stay below 2^53). Returns the total as a string, so cjson keeps every digit.
local function score_of(neg)
  if ASC then return neg end
  if string.sub(neg, 1, 1) == '-' then return string.sub(neg, 2) end
  if neg == '0' then return '0' end
  return '-' .. neg
end

-- User states.
local function parse_state(state)
  local version, reached, excluded, name =
    string.match(state, '^(%d+)|(' .. string.rep('%d', REACHED_DIGITS) .. ')|([01])|(.*)$')
  return tonumber(version), reached, excluded, name
end

-- The stored state of a user as {version, reached, excluded, name}; nil when there is none,
-- false when it cannot be parsed (somebody wrote to the key by hand).
local function read_state(users, user)
  local raw = redis.call('HGET', users, user)
  if not raw then return nil end
  local version, reached, excluded, name = parse_state(raw)
  if version == nil then return false end
  return {version, reached, excluded, name}
end

-- Replace a user's stored state (`old` as read_state returned it) by a new one.
local function write_state(ranking, users, user, old, version, neg_total, reached, excluded, name)
  if old then redis.call('ZREM', ranking, member_of(old[2], user)) end
  if excluded == '0' then
    redis.call('ZADD', ranking, neg_total, member_of(reached, user))
  end
  redis.call('HSET', users, user, version .. '|' .. reached .. '|' .. excluded .. '|' .. name)
end

-- Standard competition rank of a ZSET score (ties share a rank): what GetUserRank reports.
local function competition_rank(ranking, neg)
  return redis.call('ZCOUNT', ranking, '-inf', '(' .. neg) + 1
end

-- The total of the nearest better score than a user of competition rank `rank` holds: the
-- member at position rank - 2 is the last of those ranked above. '' at rank 1.
local function next_better_score(ranking, rank)
  if rank <= 1 then return '' end
  local row = redis.call('ZRANGE', ranking, rank - 2, rank - 2, 'WITHSCORES')
  if row[2] then return score_of(row[2]) end
  return ''
end
