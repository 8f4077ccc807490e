--[[
  add_flow: write a flow (a root job, its children, theirs...) over the queues it spans,
  unless a queue's settings are stale or the root id is still stored; a parent waits in
  `waiting-children` for its children (see `_flows.lua`). Everything is checked before
  anything is written. Dedupe rules do not apply in flows.

  Input:
    KEYS is this block once per queue of the flow (the root's first), block b at
    KEYS[(b - 1) * 13 + i]:
    KEYS[1]   meta              queue flags and counters (hash)
    KEYS[2]   jobs              job id -> record (hash)
    KEYS[3]   data              job id -> data JSON (hash)
    KEYS[4]   waiting           (sorted set)
    KEYS[5]   active            (sorted set; read to restart positions)
    KEYS[6]   delayed           (sorted set)
    KEYS[7]   waiting-children  parents by add order (sorted set)
    KEYS[8]   tags              "<tag>\0<id>" at score 0 (sorted set)
    KEYS[9]   marker            wakes idle workers (sorted set)
    KEYS[10]  gwaiting          waiting jobs by group, in claim order (sorted set)
    KEYS[11]  groups            groups with waiting jobs, in turn order (sorted set)
    KEYS[12]  deps              "<parent id>\0<n>" -> a parent's n-th child (hash)
    KEYS[13]  events            the event stream (see `_events.lua`)

    ARGV[1]  now_ms    epoch ms, or "" for the server's TIME
    ARGV[2]  versions  JSON array: per block, the settings version the caller validated
    ARGV[3]  jobs      JSON array, each parent before its children, the root first: as a
                       job of add.lua's ARGV[3] (no dedupe) with queue (its name), b (its
                       block), kids (a parent: how many children), parent {q, id, p, n,
                       ig} and pb (a child: its parent's block)

  Output:
    {summary, created, id, record, data, ...}: summary is JSON {now, stale, taken}; then
    per job in input order 1, its id, record and data. A root id still stored: that job
    alone, created 0. Stale settings: {summary} alone; another id still stored: {summary}
    with taken [queue, id]; nothing written.

  Wakes: the marker of each queue a job was written to waiting or delayed.

  Events: added {name} (a child delayed: {name, delay_ms}) per job, then (level "all")
  waiting or delayed {run_at} for a child, in the job's queue.
]]
--- @include "_lib"
--- @include "_events"
--- @include "_dedupe"

local BLOCK = {'meta', 'jobs', 'data', 'waiting', 'active', 'delayed', 'waiting-children',
  'tags', 'marker', 'gwaiting', 'groups', 'deps', 'events'}

local blocks = {}
for b = 1, #KEYS / #BLOCK do
  local Q = {}
  for i, part in ipairs(BLOCK) do
    Q[part] = KEYS[(b - 1) * #BLOCK + i]
  end
  blocks[b] = Q
end

local now = resolve_now(ARGV[1])
local versions = cjson.decode(ARGV[2])
for b, Q in ipairs(blocks) do
  local version = tonumber(redis.call('HGET', Q.meta, 'config_version')) or 0
  if version ~= versions[b] then
    return {cjson.encode({now = now, stale = true})}
  end
end

local jobs = cjson.decode(ARGV[3])
local root = jobs[1]
local R = blocks[root.b]
local stored = redis.call('HGET', R.jobs, root.id)
if stored then
  return {cjson.encode({now = now}), 0, root.id, stored, redis.call('HGET', R.data, root.id)}
end
for i = 2, #jobs do
  local job = jobs[i]
  if redis.call('HEXISTS', blocks[job.b].jobs, job.id) == 1 then
    return {cjson.encode({now = now, taken = {job.queue, job.id}})}
  end
end

-- Add order per queue, for ties.
local per_block, orders, recorders, woken = {}, {}, {}, {}
for _, job in ipairs(jobs) do
  per_block[job.b] = (per_block[job.b] or 0) + 1
end
for b, count in pairs(per_block) do
  orders[b] = redis.call('HINCRBY', blocks[b].meta, 'n', count) - count
  recorders[b] = recorder(blocks[b], now)
end

local reply = {cjson.encode({now = now})}
for _, job in ipairs(jobs) do
  local Q, E = blocks[job.b], recorders[job.b]
  orders[job.b] = orders[job.b] + 1
  local raw = insert_job(Q, job, orders[job.b], now)
  local parent = opt(job.parent)
  if parent then
    redis.call('HSET', blocks[job.pb].deps, parent.id .. '\0' .. parent.n,
      cjson.encode({q = job.queue, id = job.id, s = 'pending'}))
  end
  if opt(job.kids) then
    if E.on then
      final_event(E, 'added', job.id, cjson.encode({name = job.name}))
    end
  else
    woken[job.b] = true
    if E.on then
      record_added(E, job, now)
    end
  end
  reply[#reply + 1] = 1
  reply[#reply + 1] = job.id
  reply[#reply + 1] = raw
  reply[#reply + 1] = job.data
end
for b in pairs(woken) do
  wake(blocks[b])
end
return reply
