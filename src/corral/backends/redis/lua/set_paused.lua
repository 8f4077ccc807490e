--[[
  set_paused: pause or resume taking jobs (adds still succeed).

  Input:
    KEYS[1]  meta     queue flags (hash)
    KEYS[2]  waiting  (sorted set)
    KEYS[3]  marker   wakes idle workers (sorted set)

    ARGV[1]  paused  "1" to pause, "0" to resume

  Output:
    1 when the flag changed, else 0.

  Wakes: the marker, on resume with jobs waiting.
]]

local was = redis.call('HGET', KEYS[1], 'paused') == '1'
local paused = ARGV[1] == '1'
if paused then
  redis.call('HSET', KEYS[1], 'paused', '1')
else
  redis.call('HDEL', KEYS[1], 'paused')
  if redis.call('ZCARD', KEYS[2]) > 0 then
    redis.call('ZADD', KEYS[3], 0, '1')
  end
end
if was == paused then
  return 0
end
return 1
