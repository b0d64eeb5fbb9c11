-- Finish a rebuild: merge users changed while it ran (newer version wins), swap the rebuilt
-- keys in, mark the ranking ready and publish the top 10 if it changed.
-- Stored values: as common/redis_values.py describes (their Python owner), read and written
-- with the shared library common/lua/redis_values.lua.
-- KEYS: tmp_ranking, tmp_users, ranking, users, touched, top, meta, ready, rebuild_lock
-- ARGV: lock token, channel, now_us, expected user count of the rebuilt keys
-- Returns {ranked users, seq}; {-1, '0'} when the lock was lost, {-2, '0'} when the rebuilt
-- keys were lost (Redis wiped meanwhile): the caller starts over.
local tmp_ranking, tmp_users, ranking, users = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local touched, top, meta, ready, lock = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local token, channel, now_us, expected = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('GET', lock) ~= token then return {-1, '0'} end
if redis.call('HLEN', tmp_users) ~= expected then
  redis.call('DEL', tmp_ranking, tmp_users, lock)
  return {-2, '0'}
end
for _, user in ipairs(redis.call('SMEMBERS', touched)) do
  local live = read_state(users, user)
  if live then
    local rebuilt = read_state(tmp_users, user)
    if not rebuilt or live[1] > rebuilt[1] then
      local neg = '0'
      if live[3] == '0' then
        neg = redis.call('ZSCORE', ranking, member_of(live[2], user))
      end
      -- A live state without its ranking member is inconsistent: keep the rebuilt one.
      if neg then
        write_state(tmp_ranking, tmp_users, user, rebuilt, live[1], neg, live[2], live[3], live[4])
      end
    end
  end
end
-- UNLINK frees the old (possibly million-member) keys in the background.
redis.call('UNLINK', ranking, users)
if redis.call('EXISTS', tmp_ranking) == 1 then redis.call('RENAME', tmp_ranking, ranking) end
if redis.call('EXISTS', tmp_users) == 1 then redis.call('RENAME', tmp_users, users) end
redis.call('DEL', touched, lock)
redis.call('SET', ready, '1')
local ts = redis.call('HGET', meta, 'ts') or now_us
return {redis.call('ZCARD', ranking), publish_if_changed(ranking, users, top, meta, channel, now_us, ts)}
