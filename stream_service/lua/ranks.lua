-- The live rank of a few users (the online rank subscribers), for the ticker and the
-- "overtaken" pushes: one bounded call per chunk of users, pipelined by the caller.
-- It reads the leaderboard's ranking as GetUserRank does (leaderboard_service/lua/user_rank.lua),
-- with the same shared library of stored values in front (common/lua/redis_values.lua, loaded
-- once per sort order: scores are the true totals on an ASC board too); the rank is the standard
-- competition rank (users with a better total, plus one).
-- KEYS: ranking, users, ready   ARGV: user ids
-- Returns {0} when the ranking is not ready, else {1, ranked users, Redis commands run, then per
-- user: rank (0 when not ranked), score, the nearest better score or '', display name}.
local ranking, users, ready = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', ready) == 0 then return {0} end

local reply = {1, redis.call('ZCARD', ranking), 0}
local ops = 2
for _, user in ipairs(ARGV) do
  local rank, score, next_score, name = 0, '0', '', ''
  -- A state that cannot be parsed (false) counts as not ranked.
  local state = read_state(users, user)
  ops = ops + 1
  if state then
    name = state[4]
    if state[3] == '0' then
      local neg = redis.call('ZSCORE', ranking, member_of(state[2], user))
      ops = ops + 1
      if neg then
        rank = competition_rank(ranking, neg)
        ops = ops + 1
        score = score_of(neg)
        if rank > 1 then
          next_score = next_better_score(ranking, rank)
          ops = ops + 1
        end
      end
    end
  end
  reply[#reply + 1] = rank
  reply[#reply + 1] = score
  reply[#reply + 1] = next_score
  reply[#reply + 1] = name
end
reply[3] = ops
return reply
