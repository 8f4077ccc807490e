--[[
  drain: delete every waiting job, and every delayed one when asked.

  Input:
    KEYS[1]  jobs     job id -> record (hash)
    KEYS[2]  data     (hash)
    KEYS[3]  waiting  (sorted set)
    KEYS[4]  delayed  (sorted set)
    KEYS[5]  tags     (sorted set)
    KEYS[6]  logs     (hash)

    ARGV[1]  delayed  "1" to delete delayed jobs too

  Output:
    The number of jobs removed.
]]
--- @include "_lib"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  tags = KEYS[5], logs = KEYS[6]}

local states = {'waiting'}
if ARGV[1] == '1' then
  states[2] = 'delayed'
end
local removed = 0
for _, state in ipairs(states) do
  local ids = redis.call('ZRANGE', Q[state], 0, -1)
  delete_many(Q, state, ids)
  removed = removed + #ids
end
return removed
