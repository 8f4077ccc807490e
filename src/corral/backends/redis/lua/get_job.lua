--[[
  get_job: one job's record and data, read together.

  Input:
    KEYS[1]  jobs  job id -> record (hash)
    KEYS[2]  data  job id -> data JSON (hash)

    ARGV[1]  id  the job

  Output:
    {record, data}, or an empty reply when the job is gone.
]]

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {}
end
return {raw, redis.call('HGET', KEYS[2], ARGV[1])}
