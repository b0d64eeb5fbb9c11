-- Chosen users' ranks (a friends list, a group) in one round trip.
-- Stored values: as common/redis_values.py describes (their Python owner), read and written
-- with the shared library common/lua/redis_values.lua.
-- KEYS: ranking, users, ready   ARGV: user ids (distinct)
-- Returns {0} when the ranking is not ready (ask PostgreSQL), else {1, ranked users, entries
-- JSON [[rank, user, name, score, reached], ...]} with only the users that are ranked, in the
-- order asked; rank is the standard competition rank on the whole board.
local ranking, users, ready = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', ready) == 0 then return {0} end
local entries = {}
for _, user in ipairs(ARGV) do
  local state = read_state(users, user)
  if state and state[3] == '0' then
    local neg = redis.call('ZSCORE', ranking, member_of(state[2], user))
    if neg then
      local rank = competition_rank(ranking, neg)
      entries[#entries + 1] = {rank, user, state[4], score_of(neg), state[2]}
    end
  end
end
return {1, redis.call('ZCARD', ranking), encode_entries(entries)}
