"""The outside ledger (the oracle of the chaos tests) and the reconciler that reads it.

Every process a chaos test starts appends JSON lines to a file of its own,
`<role>-<pid>.jsonl` in the ledger directory, with `O_APPEND` writes of one line each
(no fsync: a process killed with SIGKILL loses nothing the kernel already has):

- producer  `added`   {jobs: [id, ...]} once `add`/`add_bulk` returned for them
- worker    `ready`   the worker is built and about to run
            `start`   {job, attempt, stalled, run} a processor began (run: unique per run)
            `end`     {job, run} the processor returned (the store may still refuse it)
            `done`    {job, state} the store accepted a final completion or failure
            `refused` {job} the store refused a late result (LockLostError)
            `stalled` {job} this worker handed back a job whose lock lapsed
            `error`   {msg} any other worker error event
- harness   `kill`    {pid, signal} the test killed or stopped one of its processes

Every line has `ev`, `pid` and `t` (epoch seconds; one machine, one clock).

`reconcile` compares the ledger with the store's final records: acked (ids the producer
recorded), completed, failed, lost = acked − finished, duplicate executions, stalls, and
recovery latency (from a kill to the next start of each job the killed process held).
`Report.row()` renders one line of the results table (`write_results`).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

LEDGER_ENV = "CORRAL_CHAOS_LEDGER"
"""The ledger directory, inherited by every process a test starts (and their children)."""

_LOCK_LOST = re.compile(r"^job (.+): lock lapsed")


class LedgerWriter:
    """Appends JSON lines to `<role>-<pid>.jsonl`; one `write(2)` per line, no buffering."""

    def __init__(self, directory: Path, role: str) -> None:
        self.directory = directory
        self.role = role
        self._fd: int | None = None
        self._pid = 0

    def record(self, ev: str, **fields: Any) -> None:
        """Append one line: `ev`, this pid, the time, and `fields`."""
        pid = os.getpid()
        if self._fd is None or self._pid != pid:  # opened lazily, again after a fork
            path = self.directory / f"{self.role}-{pid}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._pid = pid
        line = orjson.dumps({"ev": ev, "pid": pid, "t": time.time(), **fields}) + b"\n"
        os.write(self._fd, line)


_writers: dict[str, LedgerWriter] = {}


def writer(role: str) -> LedgerWriter:
    """This process's ledger for `role`, in the directory named by CORRAL_CHAOS_LEDGER."""
    found = _writers.get(role)
    if found is None:
        found = _writers[role] = LedgerWriter(Path(os.environ[LEDGER_ENV]), role)
    return found


def lock_lost_job(message: str) -> str | None:
    """The job id in a LockLostError's message, or None."""
    match = _LOCK_LOST.match(message)
    return match.group(1) if match else None


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One ledger line."""

    ev: str
    pid: int
    t: float
    fields: Mapping[str, Any]

    @property
    def job(self) -> str:
        return str(self.fields["job"])


def read_ledger(directory: Path) -> list[Line]:
    """Every line of every file in `directory`, in time order. A torn last line (a process
    killed in the middle of a write) is skipped."""
    lines: list[Line] = []
    for path in sorted(directory.glob("*.jsonl")):
        for raw in path.read_bytes().splitlines():
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            lines.append(Line(data.pop("ev"), int(data.pop("pid")), float(data.pop("t")), data))
    lines.sort(key=lambda line: line.t)
    return lines


@dataclass(frozen=True, slots=True)
class Snap:
    """What the store holds about one job at the end of a test."""

    state: str
    stalled_count: int
    attempts_made: int
    return_value: Any


@dataclass(frozen=True, slots=True)
class Kill:
    """One process the harness killed (SIGKILL) or stopped, and when."""

    pid: int
    t: float


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0–100), or None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Report:
    """The figures of one scenario on one store."""

    scenario: str
    store: str
    size: str
    acked: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    lost_sample: list[str] = field(default_factory=list)
    executions: int = 0
    duplicates: int = 0
    stalls: int = 0
    kills: int = 0
    recovery: list[float] = field(default_factory=list)
    phantoms: int = 0
    """Completions in the store whose run never ended in the ledger (must be 0)."""
    extra: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def p50(self) -> float | None:
        return percentile(self.recovery, 50)

    @property
    def p99(self) -> float | None:
        return percentile(self.recovery, 99)

    def check(self, ok: bool, problem: str) -> None:
        """Note a failed expectation (the test asserts none after writing its row)."""
        if not ok:
            self.problems.append(problem)

    def row(self, mode: str) -> list[str]:
        """The results-table cells of this report."""
        recovery = "–"
        if self.recovery:
            recovery = f"{_fmt(self.p50)} / {_fmt(self.p99)} s (n={len(self.recovery)})"
        extra = "; ".join(f"{key} {value}" for key, value in self.extra.items())
        verdict = "pass" if not self.problems else "FAIL: " + "; ".join(self.problems)
        return [
            self.scenario, self.store, mode, self.size, f"{self.acked:,}", f"{self.completed:,}",
            f"{self.failed:,}", f"{self.lost:,}", f"{self.duplicates:,}", f"{self.stalls:,}",
            str(self.kills), recovery, extra or "–", f"{self.wall:.0f} s", verdict,
            time.strftime("%Y-%m-%d %H:%M"),
        ]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


@dataclass(slots=True)
class _Tally:
    """The ledger, sorted by kind."""

    acked: set[str] = field(default_factory=set)
    done: dict[str, str] = field(default_factory=dict)
    starts: dict[str, list[Line]] = field(default_factory=lambda: defaultdict(list))
    ended_runs: set[str] = field(default_factory=set)
    refused: int = 0
    kills: list[Kill] = field(default_factory=list)
    stalled_lines: int = 0

    @classmethod
    def of(cls, lines: Iterable[Line]) -> _Tally:
        tally = cls()
        for line in lines:
            if line.ev == "added":
                tally.acked.update(str(job) for job in line.fields["jobs"])
            elif line.ev == "start":
                tally.starts[line.job].append(line)
            elif line.ev == "end":
                tally.ended_runs.add(str(line.fields["run"]))
            elif line.ev == "refused":
                tally.refused += 1
            elif line.ev == "done":
                tally.done[line.job] = str(line.fields["state"])
            elif line.ev == "stalled":
                tally.stalled_lines += 1
            elif line.ev == "kill" and line.fields.get("signal") == "SIGKILL":
                tally.kills.append(Kill(int(line.fields["target"]), line.t))
        return tally


def reconcile(
    report: Report,
    lines: list[Line],
    store: Mapping[str, Snap],
    *,
    extra_finished: Iterable[str] = (),
    measure_loss: bool = False,
) -> Report:
    """Fill `report` from the ledger and the store's final records.

    finished = acked ids the store holds as completed or failed, plus ids a worker saw
    accepted as final (`done`: retention may have removed them since, or a store that lost
    its data forgot them), plus `extra_finished`. A lost job is a problem unless
    `measure_loss` (a set-up known to lose data, whose loss is the figure). Recovery: see
    `recovery_latencies`.
    """
    tally = _Tally.of(lines)
    final = dict(tally.done)
    final.update(
        (job, snap.state) for job, snap in store.items() if snap.state in ("completed", "failed")
    )
    final.update((job, "completed") for job in extra_finished)
    report.acked = len(tally.acked)
    report.completed = sum(1 for job in tally.acked if final.get(job) == "completed")
    report.failed = sum(1 for job in tally.acked if final.get(job) == "failed")
    lost = sorted(tally.acked - final.keys())
    report.lost = len(lost)
    report.lost_sample = lost[:10]
    report.executions = sum(len(runs) for runs in tally.starts.values())
    report.duplicates = report.executions - len(tally.starts)
    # The store's counts miss jobs retention removed; the ledger misses a stall whose
    # recovering worker was killed before it wrote the line: take the larger.
    report.stalls = max(sum(snap.stalled_count for snap in store.values()), tally.stalled_lines)
    report.kills = len(tally.kills)
    report.recovery, untimed = recovery_latencies(tally.kills, tally.starts)
    if untimed:
        report.extra["restarts not timed"] = str(untimed)
    report.phantoms = sum(
        1 for job, snap in store.items()
        if snap.state == "completed" and job in tally.starts
        and isinstance(snap.return_value, dict)
        and snap.return_value.get("run") not in tally.ended_runs
    )
    if tally.refused:
        report.extra["refused results"] = (
            f"{tally.refused} (of which stored: {refused_yet_stored(lines, store)})")
    report.check(measure_loss or report.lost == 0,
                 f"{report.lost} lost (e.g. {', '.join(lost[:3])})")
    report.check(report.phantoms == 0, f"{report.phantoms} completions without a finished run")
    return report


def refused_yet_stored(lines: Iterable[Line], store: Mapping[str, Snap]) -> int:
    """How many times a worker was told "lock lost, result discarded" although the store
    holds the very result it had just sent (a settle that ran, but whose reply the worker
    never received, sent again and refused)."""
    last_run: dict[tuple[int, str], str] = {}
    count = 0
    for line in lines:
        if line.ev == "end":
            last_run[(line.pid, line.job)] = str(line.fields["run"])
        elif line.ev == "refused":
            stored = _return(store, line.job)
            sent = last_run.get((line.pid, line.job))
            if isinstance(stored, dict) and sent is not None and stored.get("run") == sent:
                count += 1
    return count


def _return(store: Mapping[str, Snap], job: str) -> Any:
    snap = store.get(job)
    return None if snap is None else snap.return_value


def recovery_latencies(
    kills: list[Kill], starts: Mapping[str, list[Line]]
) -> tuple[list[float], int]:
    """Seconds from each kill to the next start of each job the killed process was running,
    and how many such restarts could not be timed.

    A run of job J by the killed process counts when J's next run (by any process) began
    after the kill with a stalled count one higher: the killed process held J until its
    lock lapsed. A next run two or more stalls later means another process claimed J in
    between and died before its processor began; that restart is not timed (counted).
    """
    kill_times: dict[int, float] = {kill.pid: kill.t for kill in kills}
    latencies: list[float] = []
    untimed = 0
    for runs in starts.values():
        for this, following in itertools.pairwise(runs):
            killed_at = kill_times.get(this.pid)
            if killed_at is None or not this.t <= killed_at <= following.t:
                continue
            if int(following.fields["stalled"]) == int(this.fields["stalled"]) + 1:
                latencies.append(following.t - killed_at)
            else:
                untimed += 1
    return latencies, untimed


# -- the results table ---------------------------------------------------------------------

HEADER = [
    "scenario", "store", "mode", "size", "acked", "completed", "failed", "lost",
    "duplicate runs", "stalls", "kills", "recovery p50 / p99", "other figures", "wall",
    "verdict", "when",
]
_KEY_COLUMNS = 4  # scenario, store, mode, size identify a row


def results_path() -> Path:
    """Where the table goes: $CORRAL_CHAOS_RESULTS, else test-artifacts/chaos-results.md."""
    default = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos-results.md"
    return Path(os.environ.get("CORRAL_CHAOS_RESULTS", default))


INTRO = """# corral chaos results

Written by `tests/chaos` (fast subset: `./scripts/test`; everything at full size:
`./scripts/chaos`). One row per scenario, store, mode and size; a new run replaces its row.
lost = acked − finished (acked: the producer recorded the id after `add` returned);
duplicate runs = processor starts beyond one per job; recovery = from a `kill -9` to the
next start of each job the killed worker held.

Scenario 4 without AOF: Redis then keeps its data in memory plus RDB snapshots taken at
most as often as its `save` rules allow, so a `kill -9` loses every change since the last
snapshot: the jobs acknowledged since then that had not finished are the "lost" figure
(measured, not a defect of corral). With `appendonly yes` each write reaches the AOF file
before Redis replies, so a crash of the redis process loses nothing acknowledged, even
with `appendfsync everysec`.
"""


def write_results(cells: list[str], path: Path | None = None) -> Path:
    """Add (or replace) one row of the markdown results table; safe across processes."""
    path = path or results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".chaos-results.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows: list[list[str]] = []
        with contextlib.suppress(FileNotFoundError):
            for text in path.read_text(encoding="utf-8").splitlines():
                if text.startswith("| ") and not text.startswith(("| scenario ", "|---")):
                    rows.append([cell.strip() for cell in text.strip().strip("|").split(" | ")])
        key = cells[:_KEY_COLUMNS]
        rows = [row for row in rows if row[:_KEY_COLUMNS] != key]
        rows.append(cells)
        rows.sort(key=lambda row: (row[0], row[1], row[2], row[3]))
        table = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        table += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |"
                  for row in rows]
        path.write_text(INTRO + "\n" + "\n".join(table) + "\n", encoding="utf-8")
    return path
