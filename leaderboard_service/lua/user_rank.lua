-- One user's rank, score, distance from the top 10 and the entries around them.
-- KEYS: ranking, users, ready   ARGV: user, around (entries above and below)
local ranking, users, ready = KEYS[1], KEYS[2], KEYS[3]
local user, around = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', ready) == 0 then return {0} end
local state = redis.call('HGET', users, user)
if not state then return {1, 0} end
local _, reached, excluded, name = parse_state(state)
if excluded == '1' then return {1, 0} end
local member = reached .. ':' .. user
local position = redis.call('ZRANK', ranking, member)
if position == false then return {1, 0} end
local neg = redis.call('ZSCORE', ranking, member)
local rank = redis.call('ZCOUNT', ranking, '-inf', '(' .. neg) + 1
local total = redis.call('ZCARD', ranking)
local tenth = redis.call('ZRANGE', ranking, 9, 9, 'WITHSCORES')
local tenth_score = ''
if tenth[2] then tenth_score = score_of(tenth[2]) end
local nearby = '[]'
if around > 0 then
  local first = math.max(0, position - around)
  local list = entries_from(ranking, users, first, position - first + around + 1)
  if #list > 0 then nearby = cjson.encode(list) end
end
return {1, 1, rank, score_of(neg), position, total, tenth_score, name, reached, nearby}
