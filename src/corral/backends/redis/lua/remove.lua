--[[
  remove: delete a job that is not active, with its data, logs and tags.

  Input:
    KEYS[1]  jobs              job id -> record (hash)
    KEYS[2]  data              (hash)
    KEYS[3]  waiting           (sorted set)
    KEYS[4]  delayed           (sorted set)
    KEYS[5]  completed         (sorted set)
    KEYS[6]  failed            (sorted set)
    KEYS[7]  waiting-children  (sorted set)
    KEYS[8]  tags              (sorted set)
    KEYS[9]  logs              (hash)

    ARGV[1]  id  the job

  Output:
    1 removed, 0 no such job, -1 the job is active (nothing removed).
]]
--- @include "_lib"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  completed = KEYS[5], failed = KEYS[6], ['waiting-children'] = KEYS[7], tags = KEYS[8],
  logs = KEYS[9]}

local rec = load_job(Q, ARGV[1])
if not rec then
  return 0
end
if rec.state == 'active' then
  return -1
end
delete_job(Q, ARGV[1], rec)
return 1
