--[[
  Adding one job as `add` and `fire_schedule` do, pasted after `_lib` where a script says
  `--- @include "_dedupe"` (after `_events`). Not a transition: it has no KEYS or ARGV of
  its own; Q needs meta, jobs, data, waiting, active, delayed, tags, gwaiting, groups,
  dedupe and events.

  The job-id rule comes first: an id still stored returns that job unchanged. Then the
  job's dedupe rule {key, ttl, replace}: `dedupe` maps each key to cjson {id, exp} (exp:
  when a ttl runs out). The job last added with the key survives while its ttl runs, or,
  without a ttl, while it is waiting, delayed or active; a survivor no longer stored lets
  the add go ahead. With `replace`, a waiting or delayed survivor takes the new data and
  its delay starts again (its ttl too); an active one is a plain duplicate.

  Events (recorder E): added {name} or {name, delay_ms} for a job created, then (level
  "all") waiting or delayed {run_at}; deduplicated {key, job_id: the survivor} for an add
  a dedupe key turned away, then (level "all") delayed {run_at} for a survivor replaced by
  a delayed job, waiting for a delayed survivor replaced by one due at once. An id still
  stored records nothing.
]]

local PENDING = {waiting = true, delayed = true, active = true}

-- Debounce: the survivor takes the job's data and due time. Returns its new record.
local function replace_survivor(Q, id, rec, job, now, E)
  local run_at = due_at(job, now)
  local delayed = run_at ~= nil and run_at > now
  if delayed then
    if rec.state == 'waiting' then
      unwait(Q, id, rec)
      rec.state = 'delayed'
    end
    redis.call('ZADD', Q.delayed, run_at, id)
    if E.all then
      detail_event(E, 'delayed', id, cjson.encode({run_at = run_at}))
    end
  elseif rec.state == 'delayed' then
    redis.call('ZREM', Q.delayed, id)
    to_waiting(Q, id, rec) -- due now: to the back of the queue, as a promotion
    detail_event(E, 'waiting', id)
  end
  rec.run_at = run_at
  redis.call('HSET', Q.data, id, job.data)
  return save_job(Q, id, rec)
end

-- The stored job that makes an add with `rule` a duplicate ({id, raw record, record,
-- entry}), or nil.
local function survivor(Q, rule, now)
  local raw = redis.call('HGET', Q.dedupe, rule.key)
  if not raw then
    return nil
  end
  local entry = cjson.decode(raw)
  local exp = opt(entry.exp)
  if exp and now >= exp then
    return nil
  end
  local stored = redis.call('HGET', Q.jobs, entry.id)
  if not stored then
    return nil
  end
  local rec = decode_job(stored)
  if not exp and not PENDING[rec.state] then
    return nil
  end
  return {id = entry.id, raw = stored, rec = rec, entry = entry}
end

-- The events of a job just created at `now`.
local function record_added(E, job, now)
  local run_at = due_at(job, now)
  if run_at and run_at > now then
    final_event(E, 'added', job.id, cjson.encode({name = job.name, delay_ms = run_at - now}))
    detail_event(E, 'delayed', job.id, cjson.encode({run_at = run_at}))
  else
    final_event(E, 'added', job.id, cjson.encode({name = job.name}))
    detail_event(E, 'waiting', job.id)
  end
end

-- Add one job (`job` as add.lua's ARGV describes it; `order` counts adds, for ties),
-- recording its events in E. Returns created (1 or 0), the id, the record and the data
-- of the job the caller gets, and whether anything was written to waiting or delayed.
local function add_job(Q, job, order, now, E)
  local stored = redis.call('HGET', Q.jobs, job.id)
  if stored then
    return 0, job.id, stored, redis.call('HGET', Q.data, job.id), false
  end
  local rule = opt(job.dedupe)
  if rule then
    local found = survivor(Q, rule, now)
    if found then
      if E.on then
        final_event(E, 'deduplicated', job.id,
          cjson.encode({key = rule.key, job_id = found.id}))
      end
      local state = found.rec.state
      if not rule.replace or (state ~= 'waiting' and state ~= 'delayed') then
        return 0, found.id, found.raw, redis.call('HGET', Q.data, found.id), false
      end
      local raw = replace_survivor(Q, found.id, found.rec, job, now, E)
      local ttl = opt(rule.ttl)
      if ttl then
        found.entry.exp = now + ttl
        redis.call('HSET', Q.dedupe, rule.key, cjson.encode(found.entry))
      end
      return 0, found.id, raw, job.data, true
    end
  end
  local raw = insert_job(Q, job, order, now)
  if rule then
    local ttl = opt(rule.ttl)
    redis.call('HSET', Q.dedupe, rule.key,
      cjson.encode({id = job.id, exp = ttl and now + ttl or nil}))
  end
  if E.on then
    record_added(E, job, now)
  end
  return 1, job.id, raw, job.data, true
end
