--[[
  update_data: replace a job's data.

  Input:
    KEYS[1]  jobs  job id -> record (hash)
    KEYS[2]  data  job id -> data JSON (hash)

    ARGV[1]  id    the job
    ARGV[2]  data  JSON text

  Output:
    1 replaced, 0 the job is gone.
]]

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
