#!/usr/bin/env python
"""corral next to BullMQ and the Python job queues: the same workloads on the same Redis.

    ./setup.sh                          # once: the peers in .venv and node/node_modules
    .venv/bin/python run.py             # every system, N=10000, 3 repeats, medians
    .venv/bin/python run.py --quick     # N=2000, 1 repeat
    .venv/bin/python run.py --systems corral-redis,bullmq-node --workloads process-1

It starts its own redis-server on a free loopback port (no persistence, noeviction), runs
each workload for each system, repeat after repeat (so drift on a shared machine spreads over
every system alike), and prints one Markdown table of medians with ratios against BullMQ-Node
and huey-sqlite measured in the same run, then a second one of the redis-server CPU time each
job cost the Redis-based systems, with ratios against BullMQ-Node. Raw records go to
run/results.jsonl.

Workloads (noop jobs with payload {"i": i}; the job body is adapters/common.py:done):
  add           N jobs added one call at a time, each awaited, from one producer    jobs/s
  add-bulk      N jobs through the system's bulk call, 1000 per call                jobs/s
  process-1     N jobs added first (not timed), then ONE worker process at
  process-high  concurrency 1 / --high; from the first job's start until the
                driver sees all N executed and the system's own record of them      jobs/s
  latency       idle worker (concurrency 1), warmed up by one job, then M jobs
                added 5 ms apart carrying the wall time before the add:
                start - that time                                                   p50/p99 ms
  delayed       idle worker; M jobs added 5 ms apart with delays of 50-500 ms:
                start - (time before the add + delay); more than 1 ms below 0
                counts as early (stores keep due times in whole ms)                 p50/p99 ms

redis-server CPU per job (add, add-bulk, process-1, process-high; systems on Redis only):
INFO cpu (used_cpu_sys + used_cpu_user) before and after the timed part, divided by N, in µs.
For the adds that is the add calls themselves (for BullMQ-Node the whole Node producer run,
its connection included); for the process workloads, from after the untimed adds until the
driver sees all N done (worker start-up included, its shutdown not). The driver's own polling
of the bench keys (one GET per 5 ms) counts too: up to ~20 µs per job at 1,000 jobs/s on a
small VM, a few µs at 5,000 (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import inspect
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUN = HERE / "run"

SYSTEMS = ["bullmq-node", "bullmq-py", "huey-redis", "huey-sqlite", "rq", "arq", "saq", "celery",
           "dramatiq", "corral-redis", "corral-sqlite"]
WORKLOADS = ["add", "add-bulk", "process-1", "process-high", "latency", "delayed"]
REFERENCES = ("bullmq-node", "huey-sqlite")
OFF_REDIS = ("huey-sqlite", "corral-sqlite")  # their jobs live in files: no Redis CPU figure
CPU_WORKLOADS = ("add", "add-bulk", "process-1", "process-high")
PIP_NAMES = {"bullmq-py": "bullmq", "huey-redis": "huey", "huey-sqlite": "huey", "rq": "rq",
             "arq": "arq", "saq": "saq", "celery": "celery", "dramatiq": "dramatiq",
             "corral-redis": "corral", "corral-sqlite": "corral"}
CHUNK = 1000
SPACING_MS = 5.0
DELAY_MS = (50, 500)
EARLY_MS = 1.0  # a delayed job starting more than this before its due time ran early
POLL = 0.005  # seconds between two looks at the bench keys while a worker runs


class Skip(Exception):
    """The system has no such feature (no bulk add, no concurrency, no delays): n/a."""


class Failed(Exception):
    """The measurement went wrong: lost or duplicated jobs, a dead worker, a timeout."""


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def redis_cpu(r: redis.Redis) -> float:
    """CPU seconds (system + user) the bench redis-server has used so far."""
    cpu = r.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


# -- one system ------------------------------------------------------------------------------


class System:
    """An adapter module and the calls the workloads make on it."""

    def __init__(self, name: str, module: ModuleType, r: redis.Redis, loop: Any) -> None:
        self.name, self.ad, self.r, self.loop = name, module, r, loop
        self.external = hasattr(module, "external_enqueue")
        self.on_redis = name not in OFF_REDIS

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        return self.loop.run_until_complete(result) if inspect.isawaitable(result) else result

    def reset(self) -> None:
        self.r.flushdb()
        if hasattr(self.ad, "reset"):
            self.ad.reset()

    @contextlib.contextmanager
    def producer(self) -> Iterator[Any]:
        if self.external:
            yield None
            return
        producer = self.ad.Producer()
        if hasattr(producer, "open"):
            self.call(producer.open)
        try:
            yield producer
        finally:
            if hasattr(producer, "close"):
                self.call(producer.close)

    def enqueue(self, n: int, bulk: bool) -> tuple[float, float]:
        """Seconds to add n noop jobs, one call each or CHUNK per bulk call, and the
        redis-server CPU seconds they took."""
        if self.external:
            cpu = redis_cpu(self.r)
            seconds = float(self.ad.external_enqueue(n, bulk, CHUNK))
            return seconds, redis_cpu(self.r) - cpu
        with self.producer() as producer:
            if bulk:
                calls = [(producer.add_bulk, [{"i": i} for i in range(k, min(n, k + CHUNK))])
                         for k in range(0, n, CHUNK)]
            else:
                calls = [(producer.add, {"i": i}) for i in range(n)]
            fn = calls[0][0] if calls else producer.add
            if inspect.iscoroutinefunction(fn):
                async def timed() -> tuple[float, float]:
                    cpu = redis_cpu(self.r)
                    started = time.perf_counter()
                    for add, arg in calls:
                        await add(arg)
                    seconds = time.perf_counter() - started
                    return seconds, redis_cpu(self.r) - cpu
                return self.loop.run_until_complete(timed())
            cpu = redis_cpu(self.r)
            started = time.perf_counter()
            for add, arg in calls:
                add(arg)
            seconds = time.perf_counter() - started
            return seconds, redis_cpu(self.r) - cpu

    def spaced(self, delays: list[int | None]) -> None:
        """Add one job per entry, SPACING_MS apart: None = now (stamp t), ms = delayed (due)."""
        if self.external:
            plan = RUN / "spaced.json"
            plan.write_text(json.dumps({"spacing_ms": SPACING_MS, "delays_ms": delays}))
            self.ad.external_spaced(str(plan))
            return
        with self.producer() as producer:
            async def go() -> None:
                started = time.perf_counter()
                for i, delay in enumerate(delays):
                    wait = started + i * SPACING_MS / 1000 - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    t = time.time()
                    if delay is None:
                        result = producer.add({"i": i, "t": t})
                    else:
                        result = producer.add_delayed({"i": i, "due": t + delay / 1000},
                                                      delay / 1000)
                    if inspect.isawaitable(result):
                        await result
            self.loop.run_until_complete(go())

    def expect_pending(self, n: int) -> None:
        if hasattr(self.ad, "pending"):
            found = self.ad.pending(self.r)
            if found != n:
                raise Failed(f"{found} jobs waiting after adding {n}")

    def start_worker(self, concurrency: int, expected: int, tag: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, BENCH_N=str(expected), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
        log = (RUN / "logs" / f"{self.name}-{tag}.log").open("wb")
        with log:
            return subprocess.Popen(self.ad.worker(concurrency), cwd=HERE, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def count(self, key: str) -> int:
        value = self.r.get(key)
        return int(value) if value is not None else 0

    def wait_done(self, n: int, worker: subprocess.Popen[bytes], timeout: float) -> float:
        """Wait until n jobs ran and the system recorded them; the wall time it saw that."""
        deadline = time.monotonic() + timeout
        while self.count("bench:count") < n:
            if worker.poll() is not None:
                raise Failed(f"worker exited with status {worker.returncode} "
                             f"(see run/logs/{self.name}-*.log)")
            if time.monotonic() > deadline:
                raise Failed(f"timeout after {timeout:.0f} s")
            time.sleep(POLL)
        if hasattr(self.ad, "settled"):
            deadline = time.monotonic() + 30
            while self.ad.settled(self.r, n) < n:
                if time.monotonic() > deadline:
                    raise Failed(f"only {self.ad.settled(self.r, n)} of {n} recorded as done")
                time.sleep(POLL)
        ended = time.time()
        if self.count("bench:extra"):
            raise Failed(f"{self.count('bench:extra')} jobs ran twice")
        return ended


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """End the worker we started, with any children it started (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            return
        try:
            worker.wait(5)
            os.killpg(worker.pid, 0)  # children of the group still there?
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass


# -- the workloads ---------------------------------------------------------------------------


def w_add(s: System, args: argparse.Namespace, bulk: bool) -> dict[str, Any]:
    if bulk and not s.ad.BULK:
        raise Skip("no bulk add")
    s.reset()
    seconds, cpu = s.enqueue(args.n, bulk)
    s.expect_pending(args.n)
    return {"value": args.n / seconds, "seconds": seconds, **cpu_per_job(s, cpu, args.n)}


def cpu_per_job(s: System, cpu_seconds: float, n: int) -> dict[str, float]:
    """The redis-server CPU figure of a record, for the systems whose jobs live in Redis."""
    return {"redis_cpu_us_per_job": cpu_seconds * 1e6 / n} if s.on_redis else {}


def w_process(s: System, args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    s.reset()
    s.enqueue(args.n, bool(s.ad.BULK))
    s.expect_pending(args.n)
    cpu = redis_cpu(s.r)  # after the adds, which are not timed either
    spawned = time.time()
    worker = s.start_worker(concurrency, args.n, f"process-{concurrency}")
    try:
        ended = s.wait_done(args.n, worker, args.timeout)
        cpu = redis_cpu(s.r) - cpu  # before the worker's shutdown, which is not timed
    finally:
        stop_worker(worker)
    first = float(s.r.get("bench:first") or 0)
    return {"value": args.n / (ended - first), "seconds": ended - first,
            "concurrency": concurrency, "startup_s": first - spawned,
            **cpu_per_job(s, cpu, args.n)}


def w_timed(s: System, args: argparse.Namespace, delayed: bool) -> dict[str, Any]:
    if delayed and not (s.external or hasattr(s.ad.Producer, "add_delayed")):
        raise Skip("no delayed jobs without extra processes")
    m = args.lat_n
    pick = random.Random(m)
    delays = [pick.randint(*DELAY_MS) if delayed else None for _ in range(m)]
    s.reset()
    worker = s.start_worker(1, m + 1, "delayed" if delayed else "latency")
    try:
        s.enqueue(1, False)  # warm-up job, no stamp
        deadline = time.monotonic() + 60
        while not s.r.get("bench:first"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise Failed("the worker did not run its warm-up job")
            time.sleep(0.01)
        time.sleep(1.0)  # idle again
        s.spaced(delays)
        s.wait_done(m + 1, worker, args.timeout)
    finally:
        stop_worker(worker)
    samples = json.loads(s.r.get("bench:samples") or "[]")
    if len(samples) != m:
        raise Failed(f"{len(samples)} samples, expected {m}")
    result = {"value": percentile(samples, 0.5), "p50_ms": percentile(samples, 0.5),
              "p99_ms": percentile(samples, 0.99), "max_ms": max(samples), "jobs": m}
    if delayed:
        # Stores keep due times in whole milliseconds, taken after our stamp: up to 1 ms
        # before `due` can still be on time by the store's own clock.
        result["min_ms"] = min(samples)
        result["early"] = sum(1 for ms in samples if ms < -EARLY_MS)
    return result


def measure(s: System, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    if workload in ("add", "add-bulk"):
        return w_add(s, args, workload == "add-bulk")
    if workload == "process-1":
        return w_process(s, args, 1)
    if workload == "process-high":
        if not s.ad.HIGH:
            raise Skip("one job at a time per process")
        return w_process(s, args, args.high)
    return w_timed(s, args, workload == "delayed")


# -- the table -------------------------------------------------------------------------------


def medians(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(system, workload) -> median of each numeric field over the successful repeats."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        grouped.setdefault((rec["system"], rec["workload"]), []).append(rec)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, recs in grouped.items():
        good = [r for r in recs if r.get("ok")]
        if not good:
            out[key] = {"note": recs[-1].get("note") or "failed"}
            continue
        fields = {k for r in good for k, v in r.items() if isinstance(v, int | float)
                  and not isinstance(v, bool) and k not in ("rep",)}
        out[key] = {k: statistics.median(r[k] for r in good if k in r) for k in fields}
        out[key]["repeats"] = len(good)
    return out


def measured(
    m: dict[tuple[str, str], dict[str, Any]], system: str, workload: str
) -> dict[str, Any] | str:
    """The medians of a cell, or the cell's text when it has none (not run, or failed)."""
    got = m.get((system, workload))
    if got is None:
        return "-"
    if "value" not in got:
        return f"n/a ({got['note']})"
    return got


def cell(m: dict[tuple[str, str], dict[str, Any]], system: str, workload: str) -> str:
    got = measured(m, system, workload)
    if isinstance(got, str):
        return got
    if workload in ("latency", "delayed"):
        text = f"{got['p50_ms']:.2f} / {got['p99_ms']:.2f}"
        return text + (f", {got['early']:.0f} early" if workload == "delayed" else "")
    ratios = []
    for ref in REFERENCES:
        base = m.get((ref, workload), {}).get("value")
        ratios.append(f"{got['value'] / base:.2f}×" if base else "–")
    return f"{got['value']:,.0f} ({' · '.join(ratios)})"


def cpu_cell(m: dict[tuple[str, str], dict[str, Any]], system: str, workload: str) -> str:
    got = measured(m, system, workload)
    if isinstance(got, str):
        return got
    if "redis_cpu_us_per_job" not in got:
        return "-"
    base = m.get((REFERENCES[0], workload), {}).get("redis_cpu_us_per_job")
    ratio = f"{got['redis_cpu_us_per_job'] / base:.2f}×" if base else "–"
    return f"{got['redis_cpu_us_per_job']:.1f} ({ratio})"


def table(records: list[dict[str, Any]], systems: list[str], args: argparse.Namespace) -> str:
    m = medians(records)
    heads = {"add": "add, 1 per call (jobs/s)", "add-bulk": f"add bulk, {CHUNK} per call",
             "process-1": "process c=1", "process-high": f"process c={args.high}",
             "latency": "add→start p50 / p99 ms", "delayed": "delayed: late p50 / p99 ms"}
    cols = [w for w in WORKLOADS if w in args.workloads]
    lines = ["| system | " + " | ".join(heads[w] for w in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for system in systems:
        lines.append(f"| {system} | " + " | ".join(cell(m, system, w) for w in cols) + " |")
    return "\n".join(lines)


def cpu_table(records: list[dict[str, Any]], systems: list[str],
              args: argparse.Namespace) -> str | None:
    """redis-server µs per job of the systems on Redis; None when nothing was measured."""
    m = medians(records)
    heads = {"add": "add, 1 per call (µs/job)", "add-bulk": f"add bulk, {CHUNK} per call",
             "process-1": "process c=1", "process-high": f"process c={args.high}"}
    cols = [w for w in CPU_WORKLOADS if w in args.workloads]
    rows = [system for system in systems if system not in OFF_REDIS]
    if not cols or not rows:
        return None
    lines = ["| system | " + " | ".join(heads[w] for w in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for system in rows:
        lines.append(f"| {system} | " + " | ".join(cpu_cell(m, system, w) for w in cols) + " |")
    return "\n".join(lines)


def versions(r: redis.Redis, systems: list[str]) -> str:
    found = [f"redis-server {r.info('server')['redis_version']}",
             f"Python {sys.version.split()[0]}"]
    if "bullmq-node" in systems:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        package = HERE / "node" / "node_modules" / "bullmq" / "package.json"
        if package.exists():
            found.append(f"BullMQ {json.loads(package.read_text())['version']} on Node {node}")
    for name in sorted({PIP_NAMES[s] for s in systems if s in PIP_NAMES}):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


# -- main ------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="N=2000, 1 repeat, 200 latency jobs")
    ap.add_argument("--n", type=int, help="jobs per throughput workload [10000]")
    ap.add_argument("--repeats", type=int, help="repeats, medians reported [3]")
    ap.add_argument("--lat-n", type=int, help="jobs of the latency and delayed workloads [500]")
    ap.add_argument("--high", type=int, default=10, help="the higher worker concurrency [10]")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    args = ap.parse_args(argv)
    args.n = args.n or (2000 if args.quick else 10_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.lat_n = args.lat_n or (200 if args.quick else 500)
    args.systems = [s.strip().replace("_", "-") for s in args.systems.split(",") if s.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for name in args.systems:
        if name not in SYSTEMS:
            ap.error(f"unknown system {name!r}: {', '.join(SYSTEMS)}")
    for name in args.workloads:
        if name not in WORKLOADS:
            ap.error(f"unknown workload {name!r}: {', '.join(WORKLOADS)}")
    return args


def load(names: list[str], r: redis.Redis, loop: Any) -> dict[str, System]:
    systems = {}
    for name in names:
        try:
            module = importlib.import_module(f"adapters.{name.replace('-', '_')}")
        except ImportError as exc:
            print(f"skipping {name}: {exc} (run ./setup.sh)", file=sys.stderr)
            continue
        systems[name] = System(name, module, r, loop)
    return systems


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    (RUN / "logs").mkdir(parents=True, exist_ok=True)
    for stale in RUN.glob("*.db*"):
        stale.unlink()
    sys.path[:0] = [str(HERE), str(REPO)]
    from tests.redis_server import start_redis, stop_redis

    port, server = start_redis(RUN / "redis")
    url = f"redis://127.0.0.1:{port}/0"
    os.environ.update(BENCH_REDIS=url, BENCH_RUN=str(RUN))  # before the adapters are imported
    r = redis.Redis.from_url(url)
    loop = asyncio.new_event_loop()
    records: list[dict[str, Any]] = []
    try:
        systems = load(args.systems, r, loop)
        print(f"bench Redis on {url}; N={args.n}, {args.repeats} repeat(s), "
              f"latency jobs {args.lat_n}", file=sys.stderr)
        with (RUN / "results.jsonl").open("w") as raw:
            for rep in range(args.repeats):
                for system in systems.values():
                    for workload in args.workloads:
                        rec = run_one(system, workload, args, rep)
                        records.append(rec)
                        raw.write(json.dumps(rec) + "\n")
                        raw.flush()
        print(f"\nN={args.n} jobs per throughput run, {args.lat_n} latency jobs, medians of "
              f"{args.repeats} run(s); jobs/s cells: value (× {REFERENCES[0]} · × "
              f"{REFERENCES[1]}, same run)\n")
        print(table(records, list(systems), args))
        cpu = cpu_table(records, list(systems), args)
        if cpu:
            print(f"\nredis-server CPU (system + user, INFO cpu) per job over the timed part, "
                  f"µs, medians; cells: value (× {REFERENCES[0]}, same run; lower is less "
                  f"work for Redis)\n")
            print(cpu)
        print(f"\n{versions(r, list(systems))}; {os.cpu_count()} CPUs")
    finally:
        r.flushdb()
        loop.close()
        stop_redis(server)


def run_one(system: System, workload: str, args: argparse.Namespace, rep: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"system": system.name, "workload": workload, "rep": rep,
                           "n": args.n, "ts": time.time()}
    try:
        rec.update(measure(system, workload, args), ok=True)
        value = rec["value"]
        shown = f"{value:,.0f} jobs/s" if "p50_ms" not in rec else (
            f"p50 {rec['p50_ms']:.2f} ms, p99 {rec['p99_ms']:.2f} ms")
        if "redis_cpu_us_per_job" in rec:
            shown += f", redis-server {rec['redis_cpu_us_per_job']:.1f} µs/job"
    except Skip as exc:
        rec.update(ok=False, note=str(exc))
        shown = f"n/a ({exc})"
    except Failed as exc:
        rec.update(ok=False, error=str(exc))
        shown = f"FAILED: {exc}"
    except Exception as exc:  # an adapter crashed: say so, go on with the others
        rec.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        shown = f"FAILED: {type(exc).__name__}: {exc}"
    print(f"[{rep + 1}/{args.repeats}] {system.name:<14} {workload:<13} {shown}",
          file=sys.stderr, flush=True)
    return rec


if __name__ == "__main__":
    main()
