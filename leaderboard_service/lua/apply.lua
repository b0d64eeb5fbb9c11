-- Apply a batch of ScoreUpdated events atomically, acknowledge them, and publish the top 10
-- when it changed (DESIGN decision 4). Only a version newer than the stored one has an effect.
-- All or nothing: every event and every stored state it touches is checked before the first
-- write, so a refused batch leaves no trace (and stays pending).
-- With the board's rank channel as a ninth key (the consumer), it also PUBLISHes what each
-- applied event did to its user's rank on a ready ranking (DESIGN decision 12): old and new
-- competition rank, score, the nearest better score, and the users it passed (at most
-- MAX_PASSED, the ones right below its new position, read with one bounded ZRANGE). Nothing
-- else is enumerated. MAX_PASSED is set by leaderboard_service/scripts.py.
-- Stored values: as common/redis_values.py describes (their Python owner), read and written
-- with the shared library common/lua/redis_values.lua.
-- KEYS: ranking, users, top, meta, ready, rebuild_lock, touched, stream[, rank_channel]
-- ARGV: channel, now_us, group, n_events, then 7 per event
--       (user, version, neg_total, reached_17, excluded, name, commit_us), then stream ids to ack.
local ranking, users, top, meta, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rebuild_lock, touched, stream = KEYS[6], KEYS[7], KEYS[8]
local rank_channel = KEYS[9]
local channel, now_us, group = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])

-- Check pass: no writes.
local states = {}
local i = 5
for k = 1, n do
  local user, version, neg_total = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local reached, excluded, commit = ARGV[i + 3], ARGV[i + 4], ARGV[i + 6]
  if not (string.match(version, '^[1-9]%d*$') and string.match(neg_total, '^%-?%d+$')
      and string.match(reached, REACHED_PATTERN) and string.match(excluded, '^[01]$')
      and string.match(commit, '^%d+$') and user ~= '') then
    return redis.error_reply('INVALID event ' .. k .. ' of the batch')
  end
  if states[user] == nil then
    local state = read_state(users, user)
    if state == false then
      return redis.error_reply('CORRUPT stored state of user ' .. user)
    end
    states[user] = state or false
  end
  i = i + 7
end

-- Apply pass.
local rebuilding = redis.call('EXISTS', rebuild_lock) == 1
local track = rank_channel ~= nil and redis.call('EXISTS', ready) == 1
local moves = {}
local applied, newest = 0, nil
i = 5
for _ = 1, n do
  local user, version, neg_total = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local reached, excluded, name, commit = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  i = i + 7
  local old = states[user]
  if not old or version > old[1] then
    local old_pos, old_rank = nil, 0
    if track and old and old[3] == '0' then
      local old_member = member_of(old[2], user)
      local old_neg = redis.call('ZSCORE', ranking, old_member)
      if old_neg then
        old_pos = redis.call('ZRANK', ranking, old_member)
        old_rank = competition_rank(ranking, old_neg)
      end
    end
    write_state(ranking, users, user, old, version, neg_total, reached, excluded, name)
    if track then
      local new_rank, next_score, passed = 0, '', {}
      if excluded == '0' then
        local pos = redis.call('ZRANK', ranking, member_of(reached, user))
        new_rank = competition_rank(ranking, neg_total)
        next_score = next_better_score(ranking, new_rank)
        local last = old_pos
        if last == nil then last = redis.call('ZCARD', ranking) - 1 end
        last = math.min(last, pos + MAX_PASSED)
        if last > pos then
          for _, member in ipairs(redis.call('ZRANGE', ranking, pos + 1, last)) do
            passed[#passed + 1] = user_of(member)
          end
        end
      end
      moves[#moves + 1] = {user, name, old_rank, new_rank, score_of(neg_total), next_score,
                           commit, passed}
    end
    states[user] = {version, reached, excluded, name}
    applied = applied + 1
    if rebuilding then redis.call('SADD', touched, user) end
    if newest == nil or tonumber(commit) > tonumber(newest) then newest = commit end
  end
end

-- Acknowledge in slices (unpack has a limit on the number of values).
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('XACK', stream, group, unpack(ARGV, i, last))
  i = last + 1
end

local is_ready = redis.call('EXISTS', ready)
local seq = '0'
-- An incomplete ranking (after a wipe, before the rebuild swaps in) publishes nothing.
if applied > 0 and is_ready == 1 then
  seq = publish_if_changed(ranking, users, top, meta, channel, now_us, newest)
end
if #moves > 0 then
  redis.call('PUBLISH', rank_channel, cjson.encode(
    {n = redis.call('ZCARD', ranking), moves = moves}))
end
return {applied, seq, is_ready}
