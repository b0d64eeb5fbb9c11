-- Compare a chunk of PostgreSQL's users with the ranking in one round trip (reconcile).
-- Stored values: as common/redis_values.py describes (their Python owner), read and written
-- with the shared library common/lua/redis_values.lua.
-- KEYS: ranking, users
-- ARGV: n, then 4 per user: user, expected state head '<version>|<reached>|<excluded>',
--       reached (17 digits), expected sorted-set score ('' when the user must not be ranked)
-- Returns {users that differ, members of these users found, their states found}.
local ranking, users = KEYS[1], KEYS[2]
local n = tonumber(ARGV[1])
local mismatched, members, states = 0, 0, 0
local i = 2
for _ = 1, n do
  local user, head, reached, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local state = redis.call('HGET', users, user)
  if state then states = states + 1 end
  local found = redis.call('ZSCORE', ranking, member_of(reached, user))
  if found then members = members + 1 end
  if state then
    -- The member the stored state points to, when it is another one: this user's too, so
    -- it is not counted again as an entry PostgreSQL does not have.
    local _, stored_reached = parse_state(state)
    if stored_reached and stored_reached ~= reached
        and redis.call('ZSCORE', ranking, member_of(stored_reached, user)) then
      members = members + 1
    end
  end
  local same = state and string.sub(state, 1, #head + 1) == head .. '|'
  if score == '' then
    same = same and not found
  else
    same = same and found == score
  end
  if not same then mismatched = mismatched + 1 end
end
return {mismatched, members, states}
