-- The leaderboard's own helpers, prepended to every leaderboard script after the shared library
-- of stored values (common/lua/redis_values.lua: members, scores, user states, ranks), whose
-- Python owner is common/redis_values.py.
-- Top 10 STRING: entries JSON [[rank, user, name, score], ...]; meta HASH: seq, ts, period;
-- published on the channel as {"seq":..,"ts":..,"entries":..,"period":..}. The period is read
-- from the key names (common/redis_keys.py: period N > 1 keys end in ':p<N>:<name>').
-- Redis does not roll back a script that fails halfway, so scripts check everything that can
-- fail before their first write.

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
    local user = user_of(member)
    local name = ''
    local raw = redis.call('HGET', users, user)
    if raw then
      local _, _, _, n = parse_state(raw)
      name = n or ''
    end
    if neg ~= prev then
      if prev == nil then
        rank = competition_rank(ranking, neg)
      else
        rank = first + (i + 1) / 2
      end
      prev = neg
    end
    local row = {rank, user, name, score_of(neg)}
    if with_reached then row[5] = reached_of(member) end
    result[#result + 1] = row
  end
  return result
end

local function encode_entries(entries)
  if #entries == 0 then return '[]' end  -- cjson encodes an empty table as {}
  return cjson.encode(entries)
end

-- The period a key belongs to (its name, see common/redis_keys.py): '1' for the board's
-- original names.
local function period_of(key)
  return string.match(key, '}:p(%d+):[%w-]+$') or '1'
end

-- Compare the top 10 with the stored one; when it changed, store it with the next sequence
-- number and PUBLISH it. The sequence survives a wipe: a missing counter restarts at the
-- caller's clock in µs, above any number handed out before.

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
