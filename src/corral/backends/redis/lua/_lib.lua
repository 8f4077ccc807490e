--[[
  Helpers shared by the transitions, pasted by the loader where a script says
  `--- @include "_lib"`. Not a transition: it has no KEYS or ARGV of its own.

  Every helper takes the script's key table Q (part name -> key, all from KEYS), so no key
  name is ever built here. A job is one cjson record in the `jobs` hash; its data lives in
  the `data` hash; its place in its state's sorted set:
    waiting           priority * 2^32 + seq (FIFO seq counts up from 1, LIFO down from -1)
    delayed           run_at ms
    active            lock_until ms
    completed/failed  finished_at ms + (finish counter mod 1024) / 1024, newest last

  Fair groups. Once a queue has had a grouped job (meta `grouped` = 1), every waiting job
  is also in `gwaiting`, at score 0 as
  "<group>\0<priority><seq>\0<id>" (fixed-width hex), so each group's jobs are one range in
  claim order and its head is one ZRANGEBYLEX away. The group of ungrouped jobs is "" (as
  on SQLite), which sorts before every named group. `groups` holds each group
  with waiting jobs, scored head priority * 2^32 + served (the round-robin turn at which it
  last had a job claimed, 0 when it joined), so the group to serve next is the first one
  (ties by name). The helpers below keep `waiting`, `gwaiting` and `groups` in step: any
  script that moves a job into or out of `waiting` has all three and meta in Q. Until its
  first grouped job a queue keeps no index (`grouped` = 0): all its jobs are in the one
  group "", `waiting` alone gives their order, and the index would only cost time and
  memory on every job.

  One script call may touch several queues (a flow child's parent, see `_flows.lua`), so
  whatever a helper remembers during a call is kept per queue, by one of its keys.
]]

local PRIORITY_STEP = 4294967296 -- 2^32
local FINISH_TICKS = 1024
local UNGROUPED = ''
local PRIORITY_BIAS = 2097152 -- 2^21, options.MAX_PRIORITY
local SEQ_BIAS = 1099511627776 -- 2^40
local POSITION_WIDTH = 17 -- hex digits of a position: 6 for the priority, 11 for the seq

-- The transition's time: the caller's virtual time, else the server's clock.
local function resolve_now(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- cjson decodes JSON null to a sentinel: treat it as absent.
local function opt(value)
  if value == cjson.null then
    return nil
  end
  return value
end

-- Records are MessagePack maps: cmsgpack takes about half cjson's time to encode and
-- decode one, and the encoding is smaller. A JSON record (`{` first: an earlier version
-- wrote it) still decodes, and is stored as MessagePack the next time it changes.
local function decode_job(raw)
  if string.byte(raw, 1) == 123 then
    return cjson.decode(raw)
  end
  return cmsgpack.unpack(raw)
end

local function encode_job(rec)
  return cmsgpack.pack(rec)
end

-- Whether a stored record may hold field `name`: a look before decoding it. The key is
-- the name after its one-byte MessagePack header (or `"<name>":` in a JSON record); a
-- value holding the same bytes costs a decode, nothing more.
local function may_hold(raw, name)
  if string.byte(raw, 1) == 123 then
    return string.find(raw, '"' .. name .. '":', 1, true) ~= nil
  end
  return string.find(raw, string.char(160 + #name) .. name, 1, true) ~= nil
end

local function load_job(Q, id)
  local raw = redis.call('HGET', Q.jobs, id)
  if raw then
    return decode_job(raw)
  end
  return nil
end

-- Store the record; returns its encoding for replies.
local function save_job(Q, id, rec)
  local raw = encode_job(rec)
  redis.call('HSET', Q.jobs, id, raw)
  return raw
end

-- A fresh queue position. The counters restart whenever nothing is waiting or active (no
-- stored position can then be compared with a new one), which keeps them within 2^31.
local positions_checked = {}
local function next_seq(Q, lifo)
  if not positions_checked[Q.meta] then
    positions_checked[Q.meta] = true
    if redis.call('ZCARD', Q.waiting) == 0 and redis.call('ZCARD', Q.active) == 0 then
      redis.call('HDEL', Q.meta, 'seq', 'lseq')
    end
  end
  if lifo then
    return -redis.call('HINCRBY', Q.meta, 'lseq', 1)
  end
  return redis.call('HINCRBY', Q.meta, 'seq', 1)
end

-- The group a job takes turns in.
local function group_of(rec)
  return rec.group or UNGROUPED
end

-- A waiting job's member of `gwaiting`.
local function waiting_entry(group, rec, id)
  return group .. '\0' .. string.format('%06x%011x', rec.priority + PRIORITY_BIAS,
    rec.seq + SEQ_BIAS) .. '\0' .. id
end

-- The priority and the job id of a `gwaiting` member of `group`.
local function entry_priority(group, entry)
  return tonumber(string.sub(entry, #group + 2, #group + 7), 16) - PRIORITY_BIAS
end

local function entry_id(group, entry)
  return string.sub(entry, #group + POSITION_WIDTH + 3)
end

-- The first `count` waiting entries of a group, in claim order.
local function group_heads(Q, group, count)
  return redis.call('ZRANGEBYLEX', Q.gwaiting, '[' .. group .. '\0', '(' .. group .. '\1',
    'LIMIT', 0, count)
end

-- A `groups` score split into the head priority and the served turn.
local function rotation_parts(score)
  local priority = math.floor(score / PRIORITY_STEP)
  return priority, score - priority * PRIORITY_STEP
end

-- The head priority of groups this script call has read or written in `groups`, per
-- queue (by its `groups` key): adding many jobs to one group then reads its score once.
-- Whatever writes `groups` keeps it true.
local known_heads = {}
local function heads_of(Q)
  local heads = known_heads[Q.groups]
  if not heads then
    heads = {}
    known_heads[Q.groups] = heads
  end
  return heads
end

-- After a group's waiting jobs changed: rescore it by its head, or drop it from the
-- rotation when it has none left (it joins again as never served). `score`: its score
-- in `groups` when the caller has it.
local function refresh_group(Q, group, score)
  local head = group_heads(Q, group, 1)[1]
  local heads = heads_of(Q)
  if not head then
    redis.call('ZREM', Q.groups, group)
    heads[group] = nil
    return
  end
  local priority = entry_priority(group, head)
  heads[group] = priority
  score = score or tonumber(redis.call('ZSCORE', Q.groups, group))
  local served = 0
  if score then
    local was
    was, served = rotation_parts(score)
    if was == priority then
      return
    end
  end
  redis.call('ZADD', Q.groups, priority * PRIORITY_STEP + served, group)
end

-- HMGET in slices: unpack() cannot spread thousands of arguments.
local function hmget_many(key, fields)
  local values = {}
  for first = 1, #fields, 1000 do
    local slice = redis.call('HMGET', key, unpack(fields, first, math.min(#fields, first + 999)))
    for i = 1, #slice do
      values[first + i - 1] = slice[i]
    end
  end
  return values
end

-- Run `command key member...` over many members (or score/member or field/value pairs),
-- in slices that keep pairs together.
local function batch(command, key, members)
  for first = 1, #members, 1000 do
    redis.call(command, key, unpack(members, first, math.min(#members, first + 999)))
  end
end

-- Rebuild `gwaiting` and `groups` from `waiting`, keeping served turns: when a queue
-- starts grouping (or after any drift). O(n), once.
local function index_waiting(Q)
  local served = {}
  local rotation = redis.call('ZRANGE', Q.groups, 0, -1, 'WITHSCORES')
  for i = 1, #rotation, 2 do
    local _
    _, served[rotation[i]] = rotation_parts(tonumber(rotation[i + 1]))
  end
  redis.call('DEL', Q.gwaiting, Q.groups)
  known_heads[Q.groups] = nil
  local ids = redis.call('ZRANGE', Q.waiting, 0, -1)
  local stored = hmget_many(Q.jobs, ids)
  local entries, heads = {}, {}
  for i, id in ipairs(ids) do
    if stored[i] then
      local rec = decode_job(stored[i])
      local group = group_of(rec)
      entries[#entries + 1] = 0
      entries[#entries + 1] = waiting_entry(group, rec, id)
      if not heads[group] or rec.priority < heads[group] then
        heads[group] = rec.priority
      end
    else
      redis.call('ZREM', Q.waiting, id)
    end
  end
  batch('ZADD', Q.gwaiting, entries)
  for group, priority in pairs(heads) do
    redis.call('ZADD', Q.groups, priority * PRIORITY_STEP + (served[group] or 0), group)
  end
end

-- Whether the queue keeps the group index, per queue (by its meta key) for this call. A
-- queue written before the `grouped` flag existed had an index whenever jobs waited.
local grouping = {}
local function uses_groups(Q)
  local on = grouping[Q.meta]
  if on == nil then
    local flag = redis.call('HGET', Q.meta, 'grouped')
    if not flag then
      flag = redis.call('EXISTS', Q.gwaiting) == 1 and '1' or '0'
      redis.call('HSET', Q.meta, 'grouped', flag)
    end
    on = flag == '1'
    grouping[Q.meta] = on
  end
  return on
end

-- Into `waiting` at the job's stored position (released and stalled jobs keep theirs).
local function enqueue(Q, id, rec)
  rec.state = 'waiting'
  local group = group_of(rec)
  if not uses_groups(Q) then
    if group == UNGROUPED then
      redis.call('ZADD', Q.waiting, rec.priority * PRIORITY_STEP + rec.seq, id)
      return
    end
    index_waiting(Q) -- before this job joins `waiting`: its record may not be saved yet
    redis.call('HSET', Q.meta, 'grouped', '1')
    grouping[Q.meta] = true
  end
  redis.call('ZADD', Q.waiting, rec.priority * PRIORITY_STEP + rec.seq, id)
  redis.call('ZADD', Q.gwaiting, 0, waiting_entry(group, rec, id))
  local heads = heads_of(Q)
  local known = heads[group]
  if known and rec.priority >= known then
    return
  end
  local score = tonumber(redis.call('ZSCORE', Q.groups, group))
  if not score then
    redis.call('ZADD', Q.groups, rec.priority * PRIORITY_STEP, group)
    heads[group] = rec.priority
    return
  end
  local head, served = rotation_parts(score)
  if rec.priority < head then
    redis.call('ZADD', Q.groups, rec.priority * PRIORITY_STEP + served, group)
    head = rec.priority
  end
  heads[group] = head
end

-- Out of `waiting` (the caller changes the job's state and saves it).
local function unwait(Q, id, rec)
  redis.call('ZREM', Q.waiting, id)
  if uses_groups(Q) then
    local group = group_of(rec)
    redis.call('ZREM', Q.gwaiting, waiting_entry(group, rec, id))
    refresh_group(Q, group)
  end
end

-- To the back of `waiting` (the front for LIFO jobs). The caller saves the record.
local function to_waiting(Q, id, rec)
  rec.seq = next_seq(Q, rec.lifo)
  enqueue(Q, id, rec)
end

-- Flows (see `_flows.lua`, which defines it): tell a deleted child's parent that the
-- child is gone (child_ended(id, rec, 'removed')). Any script that deletes jobs that may be
-- children pending includes `_flows`.
local child_ended = function()
  error('a script that deletes flow children must include _flows')
end
local FINAL = {completed = true, failed = true}

-- The `deps` fields of a parent's `kids` children, "<id>\0<n>" for n = 1..kids, appended
-- to `fields`.
local function child_fields(id, kids, fields)
  for n = 1, kids do
    fields[#fields + 1] = id .. '\0' .. n
  end
  return fields
end

-- Delete a job with its data, logs and tag entries; a parent's child records too, and a
-- child not yet finished tells its parent it was removed.
local function delete_job(Q, id, rec)
  local key = Q[rec.state]
  assert(key, 'no key for state ' .. tostring(rec.state))
  if rec.state == 'waiting' then
    unwait(Q, id, rec)
  else
    redis.call('ZREM', key, id)
  end
  redis.call('HDEL', Q.jobs, id)
  redis.call('HDEL', Q.data, id)
  redis.call('HDEL', Q.logs, id)
  if rec.tags then
    for _, tag in ipairs(rec.tags) do
      redis.call('ZREM', Q.tags, tag .. '\0' .. id)
    end
  end
  if rec.kids then
    batch('HDEL', Q.deps, child_fields(id, rec.kids, {}))
  end
  if rec.parent and not FINAL[rec.state] then
    child_ended(id, rec, 'removed')
  end
end

-- Take waiting jobs out of the group index, whose records `stored` holds.
local function unwait_many(Q, ids, stored)
  if not uses_groups(Q) then
    return
  end
  local entries, touched, groups = {}, {}, {}
  for i, id in ipairs(ids) do
    if stored[i] then
      local rec = decode_job(stored[i])
      local group = group_of(rec)
      entries[#entries + 1] = waiting_entry(group, rec, id)
      if not touched[group] then
        touched[group] = true
        groups[#groups + 1] = group
      end
    end
  end
  batch('ZREM', Q.gwaiting, entries)
  for _, group in ipairs(groups) do
    refresh_group(Q, group)
  end
end

-- Delete many jobs of one state at once (retention, clean, drain; `all`: every job of the
-- state), as delete_job does. Only records that may have tags, children or a parent are
-- decoded (see may_hold), and waiting ones. Parents hear of their removed children once
-- every job is deleted.
local function delete_many(Q, state, ids, all)
  if #ids == 0 then
    return
  end
  local stored = hmget_many(Q.jobs, ids)
  local tagged, fields, children = {}, {}, {}
  local pending = not FINAL[state]
  for i, id in ipairs(ids) do
    local raw = stored[i]
    if raw then
      local tags = may_hold(raw, 'tags')
      local kids = may_hold(raw, 'kids')
      local parent = pending and may_hold(raw, 'parent')
      if tags or kids or parent then
        local rec = decode_job(raw)
        if rec.tags then
          for _, tag in ipairs(rec.tags) do
            tagged[#tagged + 1] = tag .. '\0' .. id
          end
        end
        if rec.kids then
          child_fields(id, rec.kids, fields)
        end
        if parent and rec.parent then
          children[#children + 1] = {id, rec}
        end
      end
    end
  end
  if state == 'waiting' then
    if all then
      redis.call('DEL', Q.gwaiting, Q.groups)
      known_heads[Q.groups] = nil
    else
      unwait_many(Q, ids, stored)
    end
  end
  batch('ZREM', Q[state], ids)
  batch('HDEL', Q.jobs, ids)
  batch('HDEL', Q.data, ids)
  if redis.call('EXISTS', Q.logs) == 1 then -- most queues keep no logs: spare the calls
    batch('HDEL', Q.logs, ids)
  end
  batch('ZREM', Q.tags, tagged)
  batch('HDEL', Q.deps, fields)
  for _, item in ipairs(children) do
    child_ended(item[1], item[2], 'removed')
  end
end

-- Active jobs per group, counted while the queue has a group concurrency limit (the
-- scripts that move jobs into or out of `active` set `count_groups` from the queue's meta).
local count_groups = false
local function count_active(Q, group, delta)
  if count_groups then
    if redis.call('HINCRBY', Q.gactive, group, delta) <= 0 then
      redis.call('HDEL', Q.gactive, group)
    end
  end
end

-- What a call remembers is its own: a function library (see scripts.library) keeps its
-- top level between calls, so each of its functions starts by forgetting it.
local function begin_call()
  positions_checked, known_heads, grouping, count_groups = {}, {}, {}, false
end

-- Move an active job to `completed` or `failed` at `now`; note it for retention.
local function finish(Q, id, rec, state, now, finished)
  rec.state = state
  rec.finished_at = now
  rec.lock_token = nil
  rec.lock_until = nil
  redis.call('ZREM', Q.active, id)
  local tick = redis.call('HINCRBY', Q.meta, 'fseq', 1) % FINISH_TICKS
  redis.call('ZADD', Q[state], now + tick / FINISH_TICKS, id)
  save_job(Q, id, rec)
  finished[#finished + 1] = {id, rec, state}
end

local function trim(Q, state, count, age, now)
  if count and count > 0 then
    delete_many(Q, state, redis.call('ZREVRANGE', Q[state], count, -1))
  end
  if age then
    local cutoff = string.format('(%d', now - age)
    delete_many(Q, state, redis.call('ZRANGEBYSCORE', Q[state], '-inf', cutoff))
  end
end

-- Retention of the jobs finished in this call, as the SQLite store applies it: jobs whose
-- rule keeps 0 go at once; then each distinct other rule trims its whole state once.
local function apply_retention(Q, finished, now)
  local rules, seen = {}, {}
  for _, item in ipairs(finished) do
    local id, rec, state = item[1], item[2], item[3]
    local keep = rec.keep or {}
    local prefix = state == 'completed' and 'c' or 'f'
    local count, age = keep[prefix .. 'c'], keep[prefix .. 'a']
    if count == 0 then
      delete_job(Q, id, rec)
    elseif count ~= nil or age ~= nil then
      local rule = state .. '|' .. tostring(count) .. '|' .. tostring(age)
      if not seen[rule] then
        seen[rule] = true
        rules[#rules + 1] = {state, count, age}
      end
    end
  end
  table.sort(rules, function(a, b) return a[1] < b[1] end)
  for _, rule in ipairs(rules) do
    trim(Q, rule[1], rule[2], rule[3], now)
  end
end

-- Write a new job (`job` as add.lua's ARGV describes it; `order` counts adds, for ties).
-- Returns the encoded record.
-- When a job added at `now` falls due: its delay from now, else its run_at (or nil).
local function due_at(job, now)
  local delay = opt(job.delay)
  if delay and delay > 0 then
    return now + delay
  end
  return opt(job.run_at)
end

-- A flow's job also has `parent` (stored as the child's ref to it) and `kids` (a parent:
-- it waits in `waiting-children`, by add order, keeping its run_at for later).
local function insert_job(Q, job, order, now)
  local id = job.id
  local run_at = due_at(job, now)
  local rec = {name = job.name, options = job.options, priority = job.priority, n = order,
    attempts_made = 0, stalled_count = 0, created_at = now, run_at = run_at,
    group = opt(job.group), keep = opt(job.keep), parent = opt(job.parent)}
  if job.lifo then
    rec.lifo = true
  end
  local tags = opt(job.tags)
  if tags and #tags > 0 then
    rec.tags = tags
    for _, tag in ipairs(tags) do
      redis.call('ZADD', Q.tags, 0, tag .. '\0' .. id)
    end
  end
  local kids = opt(job.kids)
  if kids and kids > 0 then
    rec.kids = kids
    rec.pending = kids
    rec.state = 'waiting-children'
    redis.call('ZADD', Q['waiting-children'], order, id)
  elseif run_at and run_at > now then
    rec.state = 'delayed'
    redis.call('ZADD', Q.delayed, run_at, id)
  else
    to_waiting(Q, id, rec)
  end
  redis.call('HSET', Q.data, id, job.data)
  return save_job(Q, id, rec)
end

-- Forget a finished job's attempts before it runs again.
local function reset_for_retry(rec)
  rec.attempts_made = 0
  rec.stalled_count = 0
  rec.failed_reason = nil
  rec.stacktrace = nil
  rec.return_value = nil
  rec.progress = nil
  rec.finished_at = nil
  rec.processed_at = nil
  rec.lock_token = nil
  rec.lock_until = nil
  rec.worker_id = nil
end

-- Wake one idle worker blocked on the marker.
local function wake(Q)
  redis.call('ZADD', Q.marker, 0, '1')
end
