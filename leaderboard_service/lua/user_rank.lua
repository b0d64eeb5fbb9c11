-- One user's rank, score, distance from the top 10 and the entries around them, in one round
-- trip.
-- Stored values: as common/redis_values.py describes (their Python owner), read and written
-- with the shared library common/lua/redis_values.lua.
-- KEYS: ranking, users, ready   ARGV: user, around (entries above and below)
-- Returns {0} when the ranking is not ready (ask PostgreSQL), {1, 0} when the user is not
-- ranked, else {1, 1, rank, score, position, ranked users, 10th score or '', name, reached,
-- nearby entries JSON}.
local ranking, users, ready = KEYS[1], KEYS[2], KEYS[3]
local user, around = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', ready) == 0 then return {0} end
local state = read_state(users, user)
if not state or state[3] == '1' then return {1, 0} end
local member = member_of(state[2], user)
local neg = redis.call('ZSCORE', ranking, member)
if not neg then return {1, 0} end
local position = redis.call('ZRANK', ranking, member)
local rank = competition_rank(ranking, neg)
local total = redis.call('ZCARD', ranking)
local tenth = redis.call('ZRANGE', ranking, 9, 9, 'WITHSCORES')
local tenth_score = ''
if tenth[2] then tenth_score = score_of(tenth[2]) end
local nearby = '[]'
if around > 0 then
  local first = math.max(0, position - around)
  nearby = encode_entries(entries_from(ranking, users, first, position - first + around + 1, true))
end
return {1, 1, rank, score_of(neg), position, total, tenth_score, state[4], state[2], nearby}
