"""Chaos tests: prove that no job is lost when processes crash, stop or lose the network.

Harness: real OS processes (`subprocess`) for producers (`chaos_producer`) and workers
(`chaos_worker`, run as `python -m tests.chaos.chaos_worker` from the repository root), a
real `redis-server` of each test's own (with a data directory, AOF on or off) and a real
SQLite file. The oracle is an outside ledger (`ledger.py`): each process appends JSON
lines to a file of its own — the producer records a job only after `add` returned, a
processor records its start and end (job id, attempt, pid, time), a worker records what
the store accepted or refused — and the reconciler compares the ledger with the store:
acked, completed, failed, lost = acked − finished, duplicate executions, stalls, and
recovery latency p50/p99 (from a `kill -9` to the next start of each job the dead worker
held). Tests signal only the processes they started, by pid. `proxy.py` is a loopback
TCP proxy that adds latency, blackholes or resets connections between workers and Redis.

Scenarios (each on every store where it applies, each writing its figures as a row of
`test-artifacts/chaos-results.md`):

1. `kill -9` a random worker every 2 s while 10,000 short jobs run on 4 processes.
2. SIGSTOP the redis-server for 5 s mid-run, then SIGCONT.
3. A zombie worker (SIGSTOP past its lock) has its late completions refused.
4. `kill -9` the redis-server mid-run and restart it on the same data directory: AOF with
   `appendfsync always`, `everysec`, and without AOF (the loss is measured; see below).
5. SQLite: `kill -9` the producer and every worker at random moments, 20 rounds.
6. CPU-bound jobs (an `async def` that blocks its loop, a spinning thread, and with
   `isolation="process"` a C call holding the GIL) are not taken for stalled.
7. Network faults through the proxy: latency, an 8 s blackhole, resets.
8. Redis memory and the SQLite file stay flat over 200,000 jobs with default retention.

`test_lost_reply.py` pins an engine bug found by scenario 7 (strict xfail until fixed): a
settle that Redis ran but whose reply was lost is reported as `LockLostError`.

Commands:

    ./scripts/test            # the fast subset (1 reduced, 3, 5 with 5 rounds, 6)
    ./scripts/chaos           # everything at full size: CORRAL_CHAOS=full pytest tests/chaos
    ./scripts/chaos -k zombie # extra arguments go to pytest

Without AOF (scenario 4) Redis keeps its data only in memory, plus RDB snapshots taken at
most as often as its `save` rules allow (at the earliest after 60 s and 10,000 changes
with the stock rules): a `kill -9` loses every change since the last snapshot, so every
job acknowledged after it — added, or completed and now gone — is lost or runs again.
With `appendonly yes` each write reaches the AOF file before Redis replies, so a crash of
the redis process loses nothing acknowledged even with `appendfsync everysec` (only an
OS crash or power loss can then take the last second); `always` also covers those.
"""
