--[[
  remove_schedule: delete a schedule and its planned tick.

  Input:
    KEYS[1]  schedules  schedule id -> record (hash)
    KEYS[2]  ticks      schedule id by next run (sorted set)

    ARGV[1]  id  the schedule

  Output:
    1 removed, 0 there was none.
]]

redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
