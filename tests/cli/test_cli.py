"""The `corral` command: every command, the store URL, and user mistakes (exit 2, one line).

Most tests run the CLI in-process with click's CliRunner; the ones about processes and signals
run the installed `corral` entry point for real.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import corral
from corral.cli import cli
from corral.monitoring import WorkerInfo

CORRAL = str(Path(sys.executable).with_name("corral"))

WORKER_MODULE = """
import asyncio
import corral

seen = {{"active": 0, "most": 0}}

async def ok(job):
    seen["active"] += 1
    seen["most"] = max(seen["most"], seen["active"])
    await asyncio.sleep(0.02)
    seen["active"] -= 1
    return {{"doubled": job.data["n"] * 2}}

async def bad(job):
    await job.log("about to fail")
    raise RuntimeError("boom " + str(job.data["n"]))

worker = corral.Worker({queue!r}, {{"ok": ok, "bad": bad}})
workers = [worker, corral.Worker("other", ok)]
not_a_worker = 42
"""


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store in the test's directory, which is also the working directory."""
    monkeypatch.delenv("CORRAL_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # `corral worker` adds the cwd to it
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def app(tmp_path: Path, url: str) -> Iterator[str]:
    """A module in the working directory defining workers of queue `q`; yields its name."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(WORKER_MODULE.format(queue="q"))
    yield name
    sys.modules.pop(name, None)


def corral_cmd(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `corral ARGS` in-process."""
    return CliRunner().invoke(cli, list(args), env=env)


def ok(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `corral ARGS` in-process and insist that it succeeded."""
    result = corral_cmd(*args, env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def add(url: str, name: str, n: int, *extra: str) -> str:
    """Add a job `name` with data {"n": n} to queue `q`; its id."""
    return ok("add", "q", name, "--data", f'{{"n": {n}}}', "--url", url, *extra).stdout.strip()


def counts(url: str, queue: str = "q") -> dict[str, int]:
    """The queue's counts, read through the Python API."""
    async def read() -> dict[str, int]:
        async with corral.Queue(queue, url=url) as q:
            return await q.counts()

    return asyncio.run(read())


def wait_for(condition: object, timeout: float = 20.0) -> None:
    """Poll `condition()` until it holds (processes start in a fraction of a second)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- producing and inspecting ----------------------------------------------------------------


def test_add_prints_the_id_and_the_store_once(url: str) -> None:
    result = ok("add", "q", "ok", "--data", '{"n": 1}', "--url", url)
    job_id = result.stdout.strip()
    assert len(job_id) >= 8
    assert "\n" not in job_id
    assert result.stderr.count("store.db") == 1
    assert counts(url)["waiting"] == 1


def test_add_says_when_the_id_already_existed(url: str) -> None:
    assert add(url, "ok", 1, "--job-id", "fixed") == "fixed"
    result = ok("add", "q", "ok", "--data", '{"n": 2}', "--job-id", "fixed", "--url", url)
    assert result.stdout.strip() == "fixed"
    assert "already existed" in result.stderr
    assert counts(url)["waiting"] == 1


def test_add_options_and_job_shows_every_field(url: str) -> None:
    add(url, "ok", 7, "--job-id", "j1", "--delay", "30m", "--attempts", "3", "--priority", "5")
    shown = ok("job", "q", "j1", "--url", url).stdout
    for text in ("delayed", "attempts_made", "priority", "run_at", '"attempts":3', '{"n":7}'):
        assert text in shown


def test_url_comes_from_corral_url(url: str) -> None:
    ok("add", "q", "ok", env={"CORRAL_URL": url})
    result = ok("stats", env={"CORRAL_URL": url})
    assert "store.db" in result.stderr
    assert counts(url)["waiting"] == 1


def test_stats_shows_every_queue_or_one(url: str) -> None:
    add(url, "ok", 1)
    ok("add", "other", "ok", "--url", url)
    both = ok("stats", "--url", url).stdout
    assert "q" in both
    assert "other" in both
    assert "waiting" in both
    one = ok("stats", "other", "--url", url).stdout
    assert "other" in one
    assert "\n│ q " not in one


def test_stats_flags_waiting_jobs_with_no_worker(url: str) -> None:
    add(url, "ok", 1)
    ok("add", "idle", "ok", "--url", url)
    asyncio.run(_drain("idle", url))  # a queue with no waiting jobs is not flagged
    every = ok("stats", "--url", url).stdout
    assert "workers" in every
    assert every.count("no worker") == 2  # q's cell and the caption naming q alone
    assert any(line.rstrip().endswith("no live worker on q") for line in every.splitlines())
    one = ok("stats", "q", "--url", url).stdout
    assert "no worker" in one
    assert "no live workers on 'q'" in one


async def _drain(queue: str, url: str) -> None:
    async with corral.Queue(queue, url=url) as q:
        await q.drain()


def test_jobs_lists_one_state_with_limit_and_offset(url: str) -> None:
    for n in range(5):
        add(url, "ok", n, "--job-id", f"job-{n}")
    first = ok("jobs", "q", "--state", "waiting", "--limit", "2", "--url", url).stdout
    assert "job-0" in first
    assert "job-1" in first
    assert "job-2" not in first
    rest = ok("jobs", "q", "--state", "waiting", "--offset", "2", "--url", url).stdout
    assert "job-2" in rest
    assert "job-4" in rest
    assert "job-0" not in rest
    assert "no failed jobs" in ok("jobs", "q", "--state", "failed", "--url", url).stdout


def test_pause_and_resume(url: str) -> None:
    add(url, "ok", 1)
    ok("pause", "q", "--url", url)
    assert "yes" in ok("stats", "q", "--url", url).stdout
    ok("resume", "q", "--url", url)
    assert "yes" not in ok("stats", "q", "--url", url).stdout


def test_remove(url: str) -> None:
    add(url, "ok", 1, "--job-id", "gone")
    assert "removed" in ok("remove", "q", "gone", "--url", url).stdout
    assert counts(url)["waiting"] == 0


# -- the worker command ----------------------------------------------------------------------


def test_worker_burst_binds_url_and_runs_jobs(url: str, app: str) -> None:
    for n in range(3):
        add(url, "ok", n)
    add(url, "bad", 9, "--job-id", "doomed")
    result = ok("worker", f"{app}:worker", "--burst", "--url", url)
    assert "ran 4 attempts" in result.output
    assert counts(url)["completed"] == 3
    assert counts(url)["failed"] == 1
    failed = ok("jobs", "q", "--state", "failed", "--url", url).stdout
    assert "doomed" in failed
    assert "boom 9" in failed
    shown = corral_cmd("job", "q", "doomed", "--url", url).stdout  # holds the job's traceback
    assert "about to fail" in shown
    assert "RuntimeError: boom 9" in shown


def test_worker_runs_a_list_and_overrides_concurrency(url: str, app: str) -> None:
    for n in range(8):
        add(url, "ok", n)
    ok("add", "other", "ok", "--data", '{"n": 1}', "--url", url)
    ok("worker", f"{app}:workers", "--burst", "--concurrency", "4", "--url", url)
    assert counts(url)["completed"] == 8
    assert counts(url, "other")["completed"] == 1
    assert sys.modules[app].seen["most"] > 1  # the module's workers say concurrency=1


def test_retry_one_job_or_every_failed_one_and_clean(url: str, app: str) -> None:
    for n in range(3):
        add(url, "bad", n, "--job-id", f"bad-{n}")
    add(url, "ok", 1, "--job-id", "fine")
    ok("worker", f"{app}:worker", "--burst", "--url", url)
    assert "waiting to run again" in ok("retry", "q", "bad-0", "--url", url).stdout
    assert counts(url)["failed"] == 2
    assert counts(url)["waiting"] == 1
    assert "retried 2 failed jobs" in ok("retry", "q", "--failed", "--url", url).stdout
    assert counts(url)["waiting"] == 3
    result = ok("clean", "q", "--state", "completed", "--grace", "0", "--url", url)
    assert "removed 1 completed job" in result.stdout
    assert counts(url)["completed"] == 0


# -- user mistakes: one line, exit 2, no traceback -------------------------------------------


MISTAKES = {
    "bad json": (["add", "q", "ok", "--data", "{nope"], "not valid JSON"),
    "bad duration": (["add", "q", "ok", "--delay", "soon"], "not a duration"),
    "bad grace": (["clean", "q", "--state", "failed", "--grace", "1 week"], "not a duration"),
    "bad queue name": (["add", "no spaces", "ok"], "queue name"),
    "unknown queue": (["jobs", "nope", "--state", "failed"], "no queue named 'nope'"),
    "unknown job": (["job", "q", "missing"], "no job 'missing'"),
    "remove unknown job": (["remove", "q", "missing"], "no job 'missing'"),
    "retry waiting job": (["retry", "q", "present"], "only failed or completed"),
    "retry both": (["retry", "q", "present", "--failed"], "not both"),
    "retry neither": (["retry", "q"], "give a job ID or --failed"),
    "missing module": (["worker", "no_such_module:worker"], "no module named 'no_such_module'"),
    "missing attribute": (["worker", "{app}:nothing"], "has no attribute 'nothing'"),
    "not a worker": (["worker", "{app}:not_a_worker"], "not a corral.Worker"),
    "bad target": (["worker", "{app}"], "MODULE:ATTRIBUTE"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_user_mistakes_exit_2_with_one_line(url: str, app: str, mistake: str) -> None:
    add(url, "ok", 1, "--job-id", "present")
    args, message = MISTAKES[mistake]
    result = corral_cmd(*(arg.replace("{app}", app) for arg in args), "--url", url)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("ftp://host/x", "unsupported store URL scheme"),
        ("sqlite://", "needs a file path"),
        ("sqlite:////no/such/directory/corral.db", "SQLite store"),
    ],
)
def test_bad_or_unreachable_store_exits_2(url: str, store: str, message: str) -> None:
    result = corral_cmd("stats", "--url", store)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_empty_corral_url_is_an_error(url: str) -> None:
    result = corral_cmd("stats", env={"CORRAL_URL": ""})
    assert result.exit_code == 2
    assert "CORRAL_URL is set but empty" in result.stderr


# -- the real entry point, processes and signals ---------------------------------------------


def run_corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `corral` script (the `url` fixture removed CORRAL_URL)."""
    return subprocess.run([CORRAL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_entry_point_runs_and_reports_mistakes(url: str, tmp_path: Path) -> None:
    added = run_corral("add", "q", "ok", "--data", '{"n": 1}', "--url", url, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert counts(url)["waiting"] == 1
    bad = run_corral("add", "q", "ok", "--data", "{nope", "--url", url, cwd=tmp_path)
    assert bad.returncode == 2
    assert "not valid JSON" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_worker_processes_burst(url: str, app: str, tmp_path: Path) -> None:
    for n in range(20):
        add(url, "ok", n)
    result = run_corral("worker", f"{app}:worker", "--processes", "2", "--burst", "--url", url,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[1] ran" in result.stderr
    assert "[2] ran" in result.stderr
    assert counts(url)["completed"] == 20
    assert result.stderr.count("corral: store") == 1


@pytest.mark.slow
@pytest.mark.parametrize("processes", ["1", "2"])
def test_worker_stops_on_sigterm(url: str, app: str, tmp_path: Path, processes: str) -> None:
    add(url, "ok", 1)
    child = subprocess.Popen(
        [CORRAL, "worker", f"{app}:worker", "--processes", processes, "--url", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: counts(url)["completed"] == 1)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "Traceback" not in err


def live_workers(url: str, queue: str = "q") -> list[WorkerInfo]:
    """The queue's live workers, read through the Python API."""
    async def read() -> list[WorkerInfo]:
        async with corral.Queue(queue, url=url) as q:
            return await q.workers()

    return asyncio.run(read())


@pytest.mark.slow
def test_stats_lists_a_running_worker(url: str, app: str, tmp_path: Path) -> None:
    for n in range(3):
        add(url, "ok", n)
    child = subprocess.Popen(
        [CORRAL, "worker", f"{app}:worker", "--concurrency", "3", "--url", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: counts(url)["completed"] == 3 and live_workers(url))
        add(url, "ok", 9, "--delay", "1h")
        every = ok("stats", "--url", url).stdout
        assert "no worker" not in every
        row = next(line for line in every.splitlines() if line.startswith("│ q "))
        assert row.split("│")[3].strip() == "1"  # the workers column
        one = ok("stats", "q", "--url", url).stdout
        (worker,) = live_workers(url)
        assert worker.pid == child.pid
        assert "workers of 'q'" in one
        listed = next(line for line in one.splitlines() if worker.id in line)
        cells = [cell.strip() for cell in listed.split("│")[1:-1]]
        assert cells[:4] == [worker.id, worker.host, str(child.pid), "3"]
        assert cells[4].endswith("ago")
        assert cells[5].endswith("ago")
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert live_workers(url) == []  # a worker that stops unregisters
    assert "no live workers on 'q'" in ok("stats", "q", "--url", url).stdout


@pytest.mark.slow
def test_stats_watch_refreshes_until_ctrl_c(url: str, tmp_path: Path) -> None:
    add(url, "ok", 1)
    child = subprocess.Popen([CORRAL, "stats", "--watch", "--url", url], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # at least one refresh
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "waiting" in out
    assert "Traceback" not in err
