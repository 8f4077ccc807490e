--[[
  add_log: append a line to a job's log, keeping the newest lines.

  Input:
    KEYS[1]  jobs  job id -> record (hash)
    KEYS[2]  logs  job id -> JSON array of lines (hash)

    ARGV[1]  id    the job
    ARGV[2]  line  the text
    ARGV[3]  keep  how many lines to keep; 0 or less keeps all

  Output:
    The number of lines kept, 0 when the job is gone.
]]

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local lines = {}
if raw then
  lines = cjson.decode(raw)
end
lines[#lines + 1] = ARGV[2]
local keep = tonumber(ARGV[3])
if keep > 0 and #lines > keep then
  local kept = {}
  for i = #lines - keep + 1, #lines do
    kept[#kept + 1] = lines[i]
  end
  lines = kept
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(lines))
return #lines
