-- One page of the ranking in one round trip.
-- Stored values: as common/redis_values.py describes (their Python owner), read and written
-- with the shared library common/lua/redis_values.lua.
-- KEYS: ranking, users, meta, ready   ARGV: offset, count
-- Returns {0} when the ranking is not ready (ask PostgreSQL), else
-- {1, entries JSON [[rank, user, name, score, reached], ...], ranked users, ts of the top 10}.
local ranking, users, meta, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', ready) == 0 then return {0} end
local entries = entries_from(ranking, users, tonumber(ARGV[1]), tonumber(ARGV[2]), true)
return {1, encode_entries(entries), redis.call('ZCARD', ranking), redis.call('HGET', meta, 'ts') or '0'}
