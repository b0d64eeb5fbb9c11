-- Finish a rebuild: merge users changed while it ran (newer version wins), swap the rebuilt
-- keys in, mark the ranking ready and publish the top 10 if it changed.
-- KEYS: tmp_ranking, tmp_users, ranking, users, touched, top, meta, ready, rebuild_lock
-- ARGV: lock token, channel, now_us, expected user count of the rebuilt keys
local tmp_ranking, tmp_users, ranking, users = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local touched, top, meta, ready, lock = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local token, channel, now_us, expected = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('GET', lock) ~= token then return {-1, '0'} end
if redis.call('HLEN', tmp_users) ~= expected then
  -- The temporary keys were lost (Redis wiped mid-rebuild): start over.
  redis.call('DEL', tmp_ranking, tmp_users, lock)
  return {-2, '0'}
end
for _, user in ipairs(redis.call('SMEMBERS', touched)) do
  local state = redis.call('HGET', users, user)
  if state then
    local version, reached, excluded, name = parse_state(state)
    local neg = redis.call('ZSCORE', ranking, reached .. ':' .. user)
    if neg == false then neg = '0' end
    apply_state(tmp_ranking, tmp_users, user, version, neg, reached, excluded, name)
  end
end
if redis.call('EXISTS', tmp_ranking) == 1 then
  redis.call('RENAME', tmp_ranking, ranking)
else
  redis.call('DEL', ranking)
end
if redis.call('EXISTS', tmp_users) == 1 then
  redis.call('RENAME', tmp_users, users)
else
  redis.call('DEL', users)
end
redis.call('DEL', touched, lock)
redis.call('SET', ready, '1')
local ts = redis.call('HGET', meta, 'ts') or now_us
return {redis.call('ZCARD', ranking), publish_if_changed(ranking, users, top, meta, channel, now_us, ts)}
