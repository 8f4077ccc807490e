"""`corral worker module:function`: a function that builds the Workers (and may first set up
queues and schedules) is called once in each worker process, with the store URL as `url=`
when it takes it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import corral
from corral.cli import cli
from corral.cli.workers import load_workers
from corral.schedules import Schedule

CORRAL = str(Path(sys.executable).with_name("corral"))

FACTORY_MODULE = """
import os

import corral

calls = []


async def ok(job):
    return job.data


def plain():
    calls.append("plain")
    return [corral.Worker("q", ok)]  # no url=: bound to the command's store


async def with_schedule(url):
    calls.append(url)
    async with corral.Queue("q", url=url) as queue:
        await queue.schedule("nightly", cron="0 2 * * *", tz="UTC")
    return corral.Worker("q", ok, url=url)


def keyword_url(*, url=None, verbose=False):
    calls.append(url)
    return (corral.Worker("q", ok), corral.Worker("other", ok))


async def note_pid():
    with open("pids.txt", "a") as file:
        file.write(f"{os.getpid()}\\n")
    return corral.Worker("q", ok)


def returns_none():
    return None


async def returns_numbers():
    return [1, 2]


def needs_queue(queue_name, url=None):
    return corral.Worker(queue_name, ok)
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
    """A module in the working directory defining worker functions; yields its name."""
    name = f"factories_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_MODULE)
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


def add_jobs(url: str, count: int, queue: str = "q") -> None:
    """Add `count` jobs to `queue`."""
    async def add() -> None:
        async with corral.Queue(queue, url=url) as q:
            for n in range(count):
                await q.add("ok", {"n": n})

    asyncio.run(add())


def read(url: str, queue: str = "q") -> tuple[dict[str, int], list[Schedule]]:
    """The queue's counts and schedules."""
    async def go() -> tuple[dict[str, int], list[Schedule]]:
        async with corral.Queue(queue, url=url) as q:
            return await q.counts(), await q.schedules()

    return asyncio.run(go())


def test_a_sync_function_is_called_once_and_its_workers_bound_to_the_url(
    url: str, app: str
) -> None:
    add_jobs(url, 2)
    result = ok("worker", f"{app}:plain", "--burst", "--url", url)
    assert "ran 2 attempts" in result.stderr
    assert sys.modules[app].calls == ["plain"]
    assert read(url)[0]["completed"] == 2


def test_an_async_function_gets_the_url_and_upserts_schedules_before_running(
    url: str, app: str
) -> None:
    add_jobs(url, 1)
    ok("worker", f"{app}:with_schedule", "--burst", env={"CORRAL_URL": url})
    ok("worker", f"{app}:with_schedule", "--burst", "--url", url)
    assert sys.modules[app].calls == [url, url]
    counts, schedules = read(url)
    assert counts["completed"] == 1
    assert [s.id for s in schedules] == ["nightly"]  # the second upsert changed nothing


def test_a_keyword_only_url_and_a_tuple_of_workers(url: str, app: str) -> None:
    add_jobs(url, 1, "other")
    ok("worker", f"{app}:keyword_url", "--burst", "--url", url)
    assert sys.modules[app].calls == [url]
    assert read(url, "other")[0]["completed"] == 1


def test_load_workers_calls_the_function(url: str, app: str) -> None:
    (worker,) = load_workers(f"{app}:with_schedule", url=url)
    assert worker.url == url
    assert [s.id for s in read(url)[1]] == ["nightly"]
    assert [w.queue_name for w in load_workers(f"{app}:keyword_url", url=url)] == ["q", "other"]
    assert sys.modules[app].calls == [url, url]


MISTAKES = {
    "returns None": ("returns_none", "returned NoneType, not a corral.Worker"),
    "returns a list of numbers": ("returns_numbers", "returned list, not a corral.Worker"),
    "needs another argument": ("needs_queue", "needs the argument 'queue_name'"),
    "a class": ("corral.Worker", "is type, not a corral.Worker"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_function_that_does_not_give_workers_exits_2(url: str, app: str, mistake: str) -> None:
    attribute, message = MISTAKES[mistake]
    result = corral_cmd("worker", f"{app}:{attribute}", "--burst", "--url", url)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.stderr.splitlines()) == 1


@pytest.mark.slow
def test_with_processes_the_function_runs_once_in_each_worker_process(
    url: str, app: str, tmp_path: Path
) -> None:
    add_jobs(url, 4)
    result = subprocess.run(
        [CORRAL, "worker", f"{app}:note_pid", "--processes", "2", "--burst", "--url", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    pids = (tmp_path / "pids.txt").read_text().split()
    assert len(pids) == len(set(pids)) == 2  # the two children; the parent only checks it
    assert read(url)[0]["completed"] == 4
