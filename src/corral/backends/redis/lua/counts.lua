--[[
  counts: the number of jobs in each state, read together.

  Input:
    KEYS[1]  waiting           (sorted set)
    KEYS[2]  delayed           (sorted set)
    KEYS[3]  active            (sorted set)
    KEYS[4]  completed         (sorted set)
    KEYS[5]  failed            (sorted set)
    KEYS[6]  waiting-children  (sorted set)

  Output:
    The six counts, in the order of KEYS.
]]

local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('ZCARD', key)
end
return counts
