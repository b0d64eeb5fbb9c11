-- One page of the ranking in one round trip.
-- KEYS: ranking, users, meta, ready   ARGV: offset, count
local ranking, users, meta, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', ready) == 0 then return {0} end
local entries = entries_from(ranking, users, tonumber(ARGV[1]), tonumber(ARGV[2]))
return {1, cjson.encode(entries), redis.call('ZCARD', ranking), redis.call('HGET', meta, 'ts') or '0'}
