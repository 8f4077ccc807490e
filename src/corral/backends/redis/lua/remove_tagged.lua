--[[
  remove_tagged: delete the waiting and delayed jobs carrying a tag.

  Input:
    KEYS[1]  jobs     job id -> record (hash)
    KEYS[2]  data     (hash)
    KEYS[3]  waiting  (sorted set)
    KEYS[4]  delayed  (sorted set)
    KEYS[5]  tags     "<tag>\0<id>" at score 0 (sorted set)
    KEYS[6]  logs     (hash)

    ARGV[1]  tag  the tag

  Output:
    The number of jobs removed.
]]
--- @include "_lib"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  tags = KEYS[5], logs = KEYS[6]}

local prefix = ARGV[1] .. '\0'
-- Tags and ids are UTF-8, which never holds the byte 0xFF: it bounds the prefix.
local members = redis.call('ZRANGEBYLEX', Q.tags, '[' .. prefix, '(' .. prefix .. '\255')
local removed = 0
for _, member in ipairs(members) do
  local id = string.sub(member, #prefix + 1)
  local rec = load_job(Q, id)
  if rec and (rec.state == 'waiting' or rec.state == 'delayed') then
    delete_job(Q, id, rec)
    removed = removed + 1
  end
end
return removed
