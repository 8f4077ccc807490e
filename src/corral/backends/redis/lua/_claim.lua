--[[
  Claiming under the queue's limits, pasted after `_lib` into settle.lua where it says
  `--- @include "_claim"`. Not a transition: it has no KEYS or ARGV of its own; Q needs
  meta, jobs, data, waiting, active, gwaiting, groups, gactive, starts and gstarts.

  Order: lowest priority first; within a priority, round-robin between groups (the group
  served longest ago first, ties by name, the ungrouped group "" first); within a
  group, FIFO (LIFO jobs first). See `_lib.lua` for `gwaiting` and `groups`.

  Limits (stored by set_config in meta; absent: none):
    concurrency                     at most this many active jobs: ZCARD active
    rate_limit / rate_per_ms        at most this many starts in any window (sliding):
                                    `starts` holds one member per start, by time, while a
                                    rate limit is set; the window of a start at `at`
                                    covers `now` while at > now - per
    group_concurrency               active jobs per group: `gactive`
    group_rate_limit / _per_ms      the same window per group: `gstarts` holds the same
                                    members as `starts`, "<group>\0<at, hex>\0<unique>",
                                    so a group's window is one ZLEXCOUNT
  Jobs the limits hold back stay waiting. When they hold back every waiting job and time
  alone will free one (a rate window slides), the claim reports when.

  Cost, n waiting jobs, g groups with waiting jobs:
    - a queue that never had a grouped job: one bulk ZPOPMIN of `waiting`, O(k log n) for
      k jobs, whatever the limits; one group waiting in a queue with the group index: one
      bulk ZPOPMIN of `gwaiting` and one batch ZREM of `waiting`;
    - several groups: per job claimed O(log n + log g) (the first group in `groups`, its
      two first entries in `gwaiting`, the moves); per group its limits hold back, O(log n)
      once per call (held groups stay first in `groups` during a call, so the scan
      resumes past them);
    - with a rate limit, O(log s) per start recorded, s the starts in the window; starts
      older than every window are forgotten as new ones are recorded.
]]

local LIMIT_FIELDS = {'rate_limit', 'rate_per_ms', 'concurrency', 'group_rate_limit',
  'group_rate_per_ms', 'group_concurrency'}
local TURN_LIMIT = 2147483648 -- 2^31: served turns are renumbered past it

local function rate_of(limit, per)
  if limit and per and per > 0 then
    return {limit = limit, per = per}
  end
  return nil
end

-- The limits from meta's LIMIT_FIELDS values.
local function limits_from(values)
  local L = {concurrency = tonumber(values[3]), group_concurrency = tonumber(values[6])}
  L.rate = rate_of(tonumber(values[1]), tonumber(values[2]))
  L.group_rate = rate_of(tonumber(values[4]), tonumber(values[5]))
  return L
end

-- A claimer: the queue's keys, limits and time, and what it learnt of each group.
local function claimer(Q, L, now, nonce)
  return {Q = Q, L = L, now = now, nonce = nonce, seen = {}}
end

-- -- rate windows ---------------------------------------------------------------------

local function start_member(group, at, unique)
  return group .. '\0' .. string.format('%016x', at) .. '\0' .. unique
end

local function start_time(group, member)
  return tonumber(string.sub(member, #group + 2, #group + 17), 16)
end

-- The lex range of a group's starts inside its window.
local function group_window(C, group)
  local since = string.format('%016x', C.now - C.L.group_rate.per + 1)
  return '[' .. group .. '\0' .. since, '(' .. group .. '\1'
end

-- When the queue's window next holds fewer than its limit: when its
-- (started - limit + 1)-th oldest start leaves it.
local function queue_frees(C, started)
  local rate = C.L.rate
  local nth = redis.call('ZRANGEBYSCORE', C.Q.starts, string.format('(%d', C.now - rate.per),
    '+inf', 'WITHSCORES', 'LIMIT', started - rate.limit, 1)
  if nth[2] then
    return tonumber(nth[2]) + rate.per
  end
  return nil
end

-- What the claim knows of a group: its active jobs and its starts in the window.
local function group_state(C, group)
  local state = C.seen[group]
  if not state then
    state = {active = 0, started = 0}
    if C.L.group_concurrency then
      state.active = tonumber(redis.call('HGET', C.Q.gactive, group)) or 0
    end
    if C.L.group_rate then
      local low, high = group_window(C, group)
      state.started = redis.call('ZLEXCOUNT', C.Q.gstarts, low, high)
    end
    C.seen[group] = state
  end
  return state
end

-- How many more jobs of a group its limits let start now (nil: any number).
local function group_room(C, group)
  local state, room = group_state(C, group), nil
  if C.L.group_concurrency then
    room = C.L.group_concurrency - state.active
  end
  if C.L.group_rate then
    local left = C.L.group_rate.limit - state.started
    room = room and math.min(room, left) or left
  end
  return room
end

-- When the group rate limit next lets one of these held groups start a job; nil when
-- each is also at its concurrency, or no rate holds them.
local function group_frees(C, held)
  local rate, first = C.L.group_rate, nil
  if not rate then
    return nil
  end
  for _, group in ipairs(held) do
    local state = group_state(C, group)
    local at_concurrency = C.L.group_concurrency and state.active >= C.L.group_concurrency
    if state.started >= rate.limit and not at_concurrency then
      local low, high = group_window(C, group)
      local nth = redis.call('ZRANGEBYLEX', C.Q.gstarts, low, high, 'LIMIT',
        state.started - rate.limit, 1)[1]
      if nth then
        local at = start_time(group, nth) + rate.per
        if not first or at < first then
          first = at
        end
      end
    end
  end
  return first
end

-- One start per claimed job (`groups[i]` the group of the i-th); forget starts older than
-- every window.
local function record_starts(C, groups)
  local L, Q = C.L, C.Q
  if not L.rate and not L.group_rate then
    return
  end
  local scored, lex = {}, {}
  for i, group in ipairs(groups) do
    local member = start_member(group, C.now, C.nonce .. ':' .. i)
    scored[#scored + 1] = C.now
    scored[#scored + 1] = member
    lex[#lex + 1] = 0
    lex[#lex + 1] = member
  end
  batch('ZADD', Q.starts, scored)
  local window = math.max(L.rate and L.rate.per or 0, L.group_rate and L.group_rate.per or 0)
  local cutoff = C.now - window
  if L.group_rate then
    batch('ZADD', Q.gstarts, lex)
    batch('ZREM', Q.gstarts, redis.call('ZRANGEBYSCORE', Q.starts, '-inf', cutoff))
  end
  redis.call('ZREMRANGEBYSCORE', Q.starts, '-inf', cutoff)
end

-- -- the group index ------------------------------------------------------------------

-- Renumber the served turns 1..k in their order (never served stays 0); the new turn.
local function renumber_turns(Q)
  local rotation = redis.call('ZRANGE', Q.groups, 0, -1, 'WITHSCORES')
  local items = {}
  for i = 1, #rotation, 2 do
    local priority, served = rotation_parts(tonumber(rotation[i + 1]))
    items[#items + 1] = {group = rotation[i], priority = priority, served = served}
  end
  table.sort(items, function(a, b)
    if a.served ~= b.served then return a.served < b.served end
    return a.group < b.group
  end)
  local turn = 0
  for _, item in ipairs(items) do
    if item.served > 0 then
      turn = turn + 1
      redis.call('ZADD', Q.groups, item.priority * PRIORITY_STEP + turn, item.group)
    end
  end
  return turn
end

-- -- claiming -------------------------------------------------------------------------

-- Up to `count` jobs of the only group with waiting jobs, in one pop of its entries (of
-- `waiting` itself in a queue without the group index).
local function take_in_order(C, group, count, indexed)
  local ids = {}
  if not indexed then
    local popped = redis.call('ZPOPMIN', C.Q.waiting, count)
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
    return ids
  end
  local popped = redis.call('ZPOPMIN', C.Q.gwaiting, count)
  for i = 1, #popped, 2 do
    ids[#ids + 1] = entry_id(group, popped[i])
  end
  batch('ZREM', C.Q.waiting, ids)
  return ids
end

-- Up to `count` jobs one at a time, each from the first group in turn order whose limits
-- let it start one. Returns the ids and, when none could start, when one may.
local function take_in_turns(C, count)
  local Q = C.Q
  local turn = tonumber(redis.call('HGET', Q.meta, 'turn')) or 0
  if turn >= TURN_LIMIT then
    turn = renumber_turns(Q)
  end
  local ids, held, heads = {}, {}, heads_of(Q)
  while #ids < count do
    local first = redis.call('ZRANGE', Q.groups, #held, #held)[1]
    if not first then
      break
    end
    local room = group_room(C, first)
    local heads = group_heads(Q, first, 2)
    if not heads[1] then
      redis.call('ZREM', Q.groups, first) -- no waiting job: out of the rotation
      heads[first] = nil
    elseif room and room <= 0 then
      held[#held + 1] = first
    else
      local id = entry_id(first, heads[1])
      redis.call('ZREM', Q.gwaiting, heads[1])
      redis.call('ZREM', Q.waiting, id)
      ids[#ids + 1] = id
      turn = turn + 1
      local state = C.seen[first]
      state.active, state.started = state.active + 1, state.started + 1
      if heads[2] then
        local priority = entry_priority(first, heads[2])
        redis.call('ZADD', Q.groups, priority * PRIORITY_STEP + turn, first)
        heads[first] = priority
      else
        redis.call('ZREM', Q.groups, first)
        heads[first] = nil
      end
    end
  end
  if #ids > 0 then
    redis.call('HSET', Q.meta, 'turn', turn)
    return ids, nil
  end
  return ids, group_frees(C, held)
end

-- Lock the taken jobs (out of `waiting` already) for this worker and add them to the
-- reply. Returns how many were claimed.
local function lock_jobs(C, ids, lock_until, worker_id, reply)
  local Q = C.Q
  local stored = hmget_many(Q.jobs, ids)
  local data = hmget_many(Q.data, ids)
  local records, locks, groups, per_group = {}, {}, {}, {}
  for i, id in ipairs(ids) do
    if stored[i] then
      local rec = decode_job(stored[i])
      local group = group_of(rec)
      groups[#groups + 1] = group
      per_group[group] = (per_group[group] or 0) + 1
      rec.state = 'active'
      rec.lock_token = C.nonce .. ':' .. i
      rec.lock_until = lock_until
      rec.processed_at = C.now
      rec.worker_id = worker_id
      local raw = encode_job(rec)
      records[#records + 1] = id
      records[#records + 1] = raw
      locks[#locks + 1] = lock_until
      locks[#locks + 1] = id
      reply[#reply + 1] = id
      reply[#reply + 1] = raw
      reply[#reply + 1] = data[i]
    end
  end
  batch('HSET', Q.jobs, records)
  batch('ZADD', Q.active, locks)
  for group, count in pairs(per_group) do
    count_active(Q, group, count)
  end
  record_starts(C, groups)
  return #groups
end

-- The smaller of two rooms, nil meaning any number.
local function least(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return math.min(a, b)
end

-- Claim up to `claim` waiting jobs within the limits. Returns how many were claimed;
-- when the limits held back every waiting job, when time alone lets one start (or nil);
-- and whether another worker may claim more now (this one took all it asked for, short
-- of the queue's limits).
local function claim_jobs(C, claim, lock_until, worker_id, reply)
  local Q, L = C.Q, C.L
  local waiting = redis.call('ZCARD', Q.waiting)
  if waiting == 0 then
    return 0, nil, false -- an idle look stays read-only
  end
  local indexed = uses_groups(Q)
  local rotation = {UNGROUPED}
  if indexed then
    rotation = redis.call('ZRANGE', Q.groups, 0, 1, 'WITHSCORES')
    if #rotation == 0 or redis.call('ZCARD', Q.gwaiting) ~= waiting then
      index_waiting(Q)
      rotation = redis.call('ZRANGE', Q.groups, 0, 1, 'WITHSCORES')
      if #rotation == 0 then
        return 0, nil, false -- `waiting` named only jobs no longer stored
      end
    end
  end
  local cap = nil -- what the queue's limits let start, nil: any number
  if L.concurrency then
    cap = L.concurrency - redis.call('ZCARD', Q.active)
  end
  if L.rate then
    local started = redis.call('ZCOUNT', Q.starts, string.format('(%d', C.now - L.rate.per),
      '+inf')
    if started >= L.rate.limit then
      return 0, queue_frees(C, started), false
    end
    cap = least(cap, L.rate.limit - started)
  end
  if cap and cap <= 0 then
    return 0, nil, false
  end
  local claimed, hold
  if #rotation > 2 then
    local ids
    ids, hold = take_in_turns(C, least(cap, claim))
    claimed = lock_jobs(C, ids, lock_until, worker_id, reply)
  else
    local group = rotation[1]
    cap = least(cap, group_room(C, group))
    if cap and cap <= 0 then
      return 0, group_frees(C, {group}), false
    end
    local ids = take_in_order(C, group, least(cap, claim), indexed)
    claimed = lock_jobs(C, ids, lock_until, worker_id, reply)
    if indexed then
      refresh_group(Q, group, tonumber(rotation[2]))
    end
  end
  return claimed, hold, claimed == claim and (cap == nil or cap > claimed)
end
