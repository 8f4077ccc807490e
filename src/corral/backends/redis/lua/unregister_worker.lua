--[[
  unregister_worker: forget a worker that stopped.

  Input:
    KEYS[1]  workers        worker id -> record (hash)
    KEYS[2]  worker_expiry  worker id by expires_at ms (sorted set)

    ARGV[1]  id  the worker

  Output:
    1 forgotten, 0 it was not registered.
]]

redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
