-- Shared helpers, prepended to every leaderboard script.
-- Ranking ZSET: score = -total, member = '<reached µs, 17 digits>:<user id>', so ZRANGE 0..n
-- orders by total desc, then reached time asc, then user id asc (DESIGN decision 5).
-- Users HASH: user id -> '<version>|<reached µs>|<excluded 0/1>|<display name>'.

local function parse_state(state)
  local version, reached, excluded, name = string.match(state, '^(%d+)|(%d+)|(%d)|(.*)$')
  return tonumber(version), reached, excluded, name
end

local function score_of(neg)
  -- ZSET scores are -total; Redis formats integers exactly ("%.17g").
  if string.sub(neg, 1, 1) == '-' then return string.sub(neg, 2) end
  if neg == '0' then return '0' end
  return '-' .. neg
end

-- Entries [rank, user, name, score] from position `first` (0-based) for `count` members;
-- rank is the standard competition rank (ties share a rank).
local function entries_from(ranking, users, first, count)
  local members = redis.call('ZRANGE', ranking, first, first + count - 1, 'WITHSCORES')
  local result = {}
  local rank, prev = 0, nil
  for i = 1, #members, 2 do
    local member, neg = members[i], members[i + 1]
    local user = string.sub(member, 19)
    local name = ''
    local state = redis.call('HGET', users, user)
    if state then
      local _, _, _, n = parse_state(state)
      name = n
    end
    if neg ~= prev then
      if prev == nil then
        rank = redis.call('ZCOUNT', ranking, '-inf', '(' .. neg) + 1
      else
        rank = first + (i + 1) / 2
      end
      prev = neg
    end
    result[#result + 1] = {rank, user, name, score_of(neg)}
  end
  return result
end

-- Compare the top 10 with the stored one; when it changed, store it with the next sequence
-- number and PUBLISH it. The sequence survives a wipe: a missing counter restarts at the
-- caller's clock in µs, above any number handed out before.
local function publish_if_changed(ranking, users, top, meta, channel, now_us, ts)
  local body = cjson.encode(entries_from(ranking, users, 0, 10))
  if #body == 2 then body = '[]' end  -- cjson encodes an empty table as {}
  if redis.call('GET', top) == body then return '0' end
  local seq
  if redis.call('HEXISTS', meta, 'seq') == 1 then
    seq = string.format('%d', redis.call('HINCRBY', meta, 'seq', 1))
  else
    seq = now_us
    redis.call('HSET', meta, 'seq', seq)
  end
  redis.call('SET', top, body)
  redis.call('HSET', meta, 'ts', ts)
  redis.call('PUBLISH', channel,
    '{"seq":' .. seq .. ',"ts":' .. ts .. ',"entries":' .. body .. '}')
  return seq
end

-- Apply one absolute state if its version is newer than the stored one.
local function apply_state(ranking, users, user, version, neg_total, reached, excluded, name)
  local state = redis.call('HGET', users, user)
  if state then
    local old_version, old_reached = parse_state(state)
    if old_version ~= nil and version <= old_version then return false end
    if old_reached then redis.call('ZREM', ranking, old_reached .. ':' .. user) end
  end
  if excluded == '0' then
    redis.call('ZADD', ranking, neg_total, reached .. ':' .. user)
  end
  redis.call('HSET', users, user, version .. '|' .. reached .. '|' .. excluded .. '|' .. name)
  return true
end
