// BullMQ (Node) for corral's peer benchmark: the producer commands and the worker.
// The job body keeps the same books as adapters/common.py (keys bench:first, bench:count,
// bench:samples, bench:extra), so the driver (run.py) reads every system the same way.
//
//   node bench.js enqueue N one|bulk CHUNK   -> prints {"seconds": ...} (adds only)
//   node bench.js spaced PLAN.json           -> adds the planned jobs on a fixed schedule
//   node bench.js worker C                   -> one Worker at concurrency C, until SIGTERM
'use strict';
const fs = require('fs');
const { performance } = require('perf_hooks');
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const REDIS_URL = process.env.BENCH_REDIS || 'redis://127.0.0.1:6379/0';
const QUEUE = 'bench';
const EXPECTED = Number(process.env.BENCH_N || '0');
const wallSeconds = () => (performance.timeOrigin + performance.now()) / 1000;
const connect = () => new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function openQueue() {
  const queue = new Queue(QUEUE, { connection: connect() });
  await queue.waitUntilReady();
  return queue;
}

async function enqueue(n, mode, chunk) {
  const queue = await openQueue();
  const started = performance.now();
  if (mode === 'bulk') {
    for (let first = 0; first < n; first += chunk) {
      const jobs = [];
      for (let i = first; i < Math.min(n, first + chunk); i++) jobs.push({ name: 'noop', data: { i } });
      await queue.addBulk(jobs);
    }
  } else {
    for (let i = 0; i < n; i++) await queue.add('noop', { i });
  }
  const seconds = (performance.now() - started) / 1000;
  await queue.close();
  return { seconds };
}

// plan: {"spacing_ms": 5, "delays_ms": [null | ms, ...]}; null = no delay (a latency probe)
async function spaced(planFile) {
  const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
  const queue = await openQueue();
  const started = performance.now();
  for (let i = 0; i < plan.delays_ms.length; i++) {
    const wait = started + i * plan.spacing_ms - performance.now();
    if (wait > 0) await pause(wait);
    const delay = plan.delays_ms[i];
    const t = wallSeconds();
    if (delay === null) await queue.add('noop', { i, t });
    else await queue.add('noop', { i, due: t + delay / 1000 }, { delay });
  }
  await queue.close();
  return { added: plan.delays_ms.length };
}

function work(concurrency) {
  const books = connect();
  const samples = [];
  let seen = 0;
  const worker = new Worker(QUEUE, async (job) => {
    const now = wallSeconds();
    const stamp = job.data.due !== undefined ? job.data.due : job.data.t;
    if (stamp !== undefined) samples.push((now - stamp) * 1000);
    seen += 1;
    if (seen === 1) await books.set('bench:first', String(now), 'NX');
    if (seen === EXPECTED) {
      await books.multi().set('bench:samples', JSON.stringify(samples))
        .set('bench:count', String(seen)).exec();
    } else if (seen > EXPECTED) {
      await books.incr('bench:extra');
    }
  }, { connection: connect(), concurrency });
  worker.on('error', (error) => console.error(error));
  process.on('SIGTERM', async () => { await worker.close(); process.exit(0); });
}

const [command, ...args] = process.argv.slice(2);
const print = (result) => { console.log(JSON.stringify(result)); process.exit(0); };
if (command === 'enqueue') enqueue(Number(args[0]), args[1], Number(args[2] || 1000)).then(print);
else if (command === 'spaced') spaced(args[0]).then(print);
else if (command === 'worker') work(Number(args[0]));
else {
  console.error('usage: bench.js enqueue N one|bulk CHUNK | spaced PLAN.json | worker C');
  process.exit(2);
}
