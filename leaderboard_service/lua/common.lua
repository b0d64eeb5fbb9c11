-- Shared helpers, prepended to every leaderboard script.
-- These scripts write the stored values; their format is owned in Python by
-- common/redis_values.py (keep both in step; tests/common/test_redis_values.py checks them).
-- Ranking ZSET: score = -total, member = '<reached µs, 17 digits>:<user id>', so ZRANGE 0..n
-- orders by total desc, then reached time asc, then user id asc (DESIGN decision 5). On a
-- lower-is-better board the score is the total itself (ASC, set by the loader in front of this
-- file: each script is loaded once per sort order), so ZRANGE orders by total asc, same ties.
-- Users HASH: user id -> '<version>|<reached µs, 17 digits>|<excluded 0/1>|<display name>'.
-- Top 10 STRING: entries JSON [[rank, user, name, score], ...]; meta HASH: seq, ts, period;
-- published on the channel as {"seq":..,"ts":..,"entries":..,"period":..}. The period is read
-- from the key names (common/redis_keys.py: period N > 1 keys end in ':p<N>:<name>').
-- Redis does not roll back a script that fails halfway, so scripts check everything that can
-- fail before their first write.

local REACHED_PATTERN = '^' .. string.rep('%d', 17) .. '$'

local function parse_state(state)
  local version, reached, excluded, name =
    string.match(state, '^(%d+)|(' .. string.rep('%d', 17) .. ')|([01])|(.*)$')
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
  if old then redis.call('ZREM', ranking, old[2] .. ':' .. user) end
  if excluded == '0' then
    redis.call('ZADD', ranking, neg_total, reached .. ':' .. user)
  end
  redis.call('HSET', users, user, version .. '|' .. reached .. '|' .. excluded .. '|' .. name)
end

local function score_of(neg)
  -- ZSET scores are -total (the total when ASC); Redis formats integers exactly ("%.17g",
  -- totals stay below 2^53).
  if ASC then return neg end
  if string.sub(neg, 1, 1) == '-' then return string.sub(neg, 2) end
  if neg == '0' then return '0' end
  return '-' .. neg
end

-- Entries {rank, user, name, score[, reached]} from position `first` (0-based) for `count`
-- members; rank is the standard competition rank (ties share a rank). Scores are strings so
-- cjson keeps every digit.
local function entries_from(ranking, users, first, count, with_reached)
  if count <= 0 then return {} end
  local members = redis.call('ZRANGE', ranking, first, first + count - 1, 'WITHSCORES')
  local result = {}
  local rank, prev = 0, nil
  for i = 1, #members, 2 do
    local member, neg = members[i], members[i + 1]
    local user = string.sub(member, 19)
    local name = ''
    local raw = redis.call('HGET', users, user)
    if raw then
      local _, _, _, n = parse_state(raw)
      name = n or ''
    end
    if neg ~= prev then
      if prev == nil then
        rank = redis.call('ZCOUNT', ranking, '-inf', '(' .. neg) + 1
      else
        rank = first + (i + 1) / 2
      end
      prev = neg
    end
    local row = {rank, user, name, score_of(neg)}
    if with_reached then row[5] = string.sub(member, 1, 17) end
    result[#result + 1] = row
  end
  return result
end

local function encode_entries(entries)
  if #entries == 0 then return '[]' end  -- cjson encodes an empty table as {}
  return cjson.encode(entries)
end

-- Compare the top 10 with the stored one; when it changed, store it with the next sequence
-- number and PUBLISH it. The sequence survives a wipe: a missing counter restarts at the
-- caller's clock in µs, above any number handed out before.
-- The period a key belongs to (its name, see common/redis_keys.py): '1' for the board's
-- original names.
local function period_of(key)
  return string.match(key, '}:p(%d+):[%w-]+$') or '1'
end

local function publish_if_changed(ranking, users, top, meta, channel, now_us, ts)
  local body = encode_entries(entries_from(ranking, users, 0, 10, false))
  if redis.call('GET', top) == body then return '0' end
  local period = period_of(top)
  local seq
  if redis.call('HEXISTS', meta, 'seq') == 1 then
    seq = string.format('%d', redis.call('HINCRBY', meta, 'seq', 1))
  else
    seq = now_us
    redis.call('HSET', meta, 'seq', seq)
  end
  redis.call('SET', top, body)
  redis.call('HSET', meta, 'ts', ts, 'period', period)
  redis.call('PUBLISH', channel,
    '{"seq":' .. seq .. ',"ts":' .. ts .. ',"entries":' .. body .. ',"period":' .. period .. '}')
  return seq
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
