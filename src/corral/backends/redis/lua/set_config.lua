--[[
  set_config: store the queue's settings and move their version on.

  Input:
    KEYS[1]  meta  queue settings (hash): config, config_version

    ARGV[1]  config  JSON text

  Output:
    The new version.
]]

redis.call('HSET', KEYS[1], 'config', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'config_version', 1)
