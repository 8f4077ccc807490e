--[[
  Flows: what ending a child does to its parent, pasted after `_lib` and `_events` where a
  script says `--- @include "_flows"`. Not a transition: it has no KEYS or ARGV of its own.

  A parent waits in its queue's `waiting-children` with `kids` (children added) and
  `pending` (children not yet ended) in its record. Its queue's `deps` hash holds one cjson
  record per child, field "<parent id>\0<n>" (n = 1..kids, in the order they were added):
  {q, id, s, rv, fr}: the child's queue and id, its state for the parent (pending,
  completed, failed or removed), its return value (JSON text) or failure reason. A child's
  record holds `parent` {q, id, p, n, ig}: the parent's queue, id and key prefix (the
  parent's keys are built from it: a flow spans one cluster slot, so they are in the
  script's slot), its place n, and ig when its failure is ignored.

  When a child ends (settle's complete and fail, recover_stalled failing it, any deletion
  while it is not finished), its record at the parent takes the outcome, once: a record no
  longer pending, or naming another job, is left alone (as are the records of a parent
  that is gone). Then only a parent still in `waiting-children` moves: completed, removed,
  and failed with ig drop its `pending` by one, and at 0 it becomes waiting (delayed while
  its run_at is ahead) and its queue's marker wakes a worker; failed without ig fails it
  at once with reason "child <queue>:<id> failed: <reason>" (its retention, a failed
  event, counted in its queue's metrics), and that failure goes on to its own parent.

  Cost: O(1) per child ended (its record, its parent's record), and nothing at all for
  jobs without a parent.
]]

-- The parts of a parent's queue that ending a child may touch.
local FLOW_PARTS = {'meta', 'jobs', 'data', 'waiting', 'active', 'delayed', 'failed',
  'waiting-children', 'tags', 'logs', 'marker', 'gwaiting', 'groups', 'deps', 'events',
  'metrics', 'metric_minutes'}

-- The keys of the queue whose keys start with `prefix` (as a child's parent ref holds it).
local function queue_at(prefix)
  local P = {}
  for _, part in ipairs(FLOW_PARTS) do
    P[part] = prefix .. part
  end
  return P
end

-- The parent's children are done: to waiting, or delayed while its run_at is ahead.
local function release_parent(P, id, rec, now)
  redis.call('ZREM', P['waiting-children'], id)
  local E = recorder(P, now)
  local run_at = rec.run_at
  if run_at and run_at > (now or resolve_now('')) then
    rec.state = 'delayed'
    redis.call('ZADD', P.delayed, run_at, id)
    if E.all then
      detail_event(E, 'delayed', id, cjson.encode({run_at = run_at}))
    end
  else
    to_waiting(P, id, rec)
    detail_event(E, 'waiting', id)
  end
  save_job(P, id, rec)
  wake(P)
end

-- A child failed for good: the parent fails from `waiting-children` as a job failing for
-- good does, with its retention, event and metrics.
local function fail_parent(P, id, rec, reason, now)
  redis.call('ZREM', P['waiting-children'], id)
  rec.state = 'failed'
  rec.failed_reason = reason
  rec.finished_at = now
  local tick = redis.call('HINCRBY', P.meta, 'fseq', 1) % FINISH_TICKS
  redis.call('ZADD', P.failed, now + tick / FINISH_TICKS, id)
  save_job(P, id, rec)
  local E = recorder(P, now)
  if E.on then
    final_event(E, 'failed', id,
      cjson.encode({reason = reason, attempts_made = rec.attempts_made}))
  end
  local T = tally(now)
  tally_job(T, rec, false)
  write_tally(P, T)
  apply_retention(P, {{id, rec, 'failed'}}, now)
end

-- The child `id` (its record `rec`) ended `how` ('completed' with its return value,
-- 'failed' with its reason, 'removed'), at `now` (nil: the server's TIME, when needed).
child_ended = function(id, rec, how, value, now)
  local ref = rec.parent
  while ref do
    local P = queue_at(ref.p)
    local field = ref.id .. '\0' .. ref.n
    local raw = redis.call('HGET', P.deps, field)
    if not raw then
      return
    end
    local kid = cjson.decode(raw)
    if kid.s ~= 'pending' or kid.id ~= id then
      return
    end
    kid.s = how
    if how == 'completed' then
      kid.rv = value
    elseif how == 'failed' then
      kid.fr = value
    end
    redis.call('HSET', P.deps, field, cjson.encode(kid))
    local parent = load_job(P, ref.id)
    if not parent or parent.state ~= 'waiting-children' then
      return
    end
    if how ~= 'failed' or ref.ig then
      parent.pending = math.max(0, parent.pending - 1)
      if parent.pending == 0 then
        release_parent(P, ref.id, parent, now)
      else
        save_job(P, ref.id, parent)
      end
      return
    end
    now = now or resolve_now('')
    local reason = 'child ' .. kid.q .. ':' .. id .. ' failed: ' .. value
    fail_parent(P, ref.id, parent, reason, now)
    id, value, ref = ref.id, reason, parent.parent
  end
end
