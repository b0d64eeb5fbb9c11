-- Apply a batch of ScoreUpdated events atomically, acknowledge them, and publish the top 10
-- when it changed (DESIGN decision 4). Only a version newer than the stored one has an effect.
-- All or nothing: every event and every stored state it touches is checked before the first
-- write, so a refused batch leaves no trace (and stays pending).
-- Stored values: as common/redis_values.py describes (their Python owner).
-- KEYS: ranking, users, top, meta, ready, rebuild_lock, touched, stream
-- ARGV: channel, now_us, group, n_events, then 7 per event
--       (user, version, neg_total, reached_17, excluded, name, commit_us), then stream ids to ack.
local ranking, users, top, meta, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rebuild_lock, touched, stream = KEYS[6], KEYS[7], KEYS[8]
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
local applied, newest = 0, nil
i = 5
for _ = 1, n do
  local user, version, neg_total = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local reached, excluded, name, commit = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  i = i + 7
  local old = states[user]
  if not old or version > old[1] then
    write_state(ranking, users, user, old, version, neg_total, reached, excluded, name)
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
return {applied, seq, is_ready}
