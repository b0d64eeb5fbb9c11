-- The live rank of a few users (the online rank subscribers), for the ticker and the
-- "overtaken" pushes: one bounded call per chunk of users, pipelined by the caller.
-- It reads the leaderboard's ranking as GetUserRank does (leaderboard_service/lua/user_rank.lua):
-- the stored formats are common/redis_values.py's; the rank is the standard competition rank
-- (users with a higher total, plus one).
-- KEYS: ranking, users, ready   ARGV: user ids
-- Returns {0} when the ranking is not ready, else {1, ranked users, Redis commands run, then per
-- user: rank (0 when not ranked), score, the nearest better score or '', display name}.
local ranking, users, ready = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', ready) == 0 then return {0} end

local function score_of(neg)
  if string.sub(neg, 1, 1) == '-' then return string.sub(neg, 2) end
  if neg == '0' then return '0' end
  return '-' .. neg
end

local reply = {1, redis.call('ZCARD', ranking), 0}
local ops = 2
for _, user in ipairs(ARGV) do
  local rank, score, next_score, name = 0, '0', '', ''
  local raw = redis.call('HGET', users, user)
  ops = ops + 1
  if raw then
    local reached, excluded, n =
      string.match(raw, '^%d+|(' .. string.rep('%d', 17) .. ')|([01])|(.*)$')
    name = n or ''
    if excluded == '0' then
      local neg = redis.call('ZSCORE', ranking, reached .. ':' .. user)
      ops = ops + 1
      if neg then
        rank = redis.call('ZCOUNT', ranking, '-inf', '(' .. neg) + 1
        ops = ops + 1
        score = score_of(neg)
        if rank > 1 then
          local row = redis.call('ZRANGE', ranking, rank - 2, rank - 2, 'WITHSCORES')
          ops = ops + 1
          if row[2] then next_score = score_of(row[2]) end
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
