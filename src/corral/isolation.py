"""`isolation="process"`: each job runs in a pooled child process that can be killed.

The parent sends a job as one JSON line on the child's stdin and reads one JSON line
back. A child that overruns its job's timeout is killed and replaced; one that dies
(os._exit, a segfault) fails that attempt and the pool starts another. Processors are
found in the child by `module:qualname`, so they must be importable top-level callables.
Nothing is pickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import os
import runpy
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from corral import codec
from corral.backends.base import JobRecord, ParentRef
from corral.errors import CorralError, InvalidOptionError, RateLimited, UnrecoverableError
from corral.job_state import JobState

__all__ = ["ChildProcessError_", "ProcessPool", "processor_target"]

_LINE_LIMIT = 64 * 1024 * 1024  # a job's data is capped by max_payload; leave room


class ChildProcessError_(CorralError):
    """A job's child process failed: it raised, or it died."""


def processor_target(function: Callable[..., Any], name: str) -> str:
    """`module:qualname` of a processor that a child process can import."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if module is None or not qualname or "<" in qualname:
        raise InvalidOptionError(
            f"processor for {name!r} must be a top-level function to run with "
            "isolation='process' (lambdas, closures and methods cannot be imported by a child)"
        )
    if module == "__main__":
        path = getattr(sys.modules["__main__"], "__file__", None)
        if path is None:
            raise InvalidOptionError("processors defined interactively cannot run in a child")
        return f"{os.path.abspath(path)}:{qualname}"
    return f"{module}:{qualname}"


def _load(target: str) -> Callable[..., Any]:
    where, _, qualname = target.rpartition(":")
    if where.endswith(".py"):
        namespace: Mapping[str, Any] = runpy.run_path(where, run_name="__corral_child__")
        value: Any = namespace[qualname.split(".")[0]]
        parts = qualname.split(".")[1:]
    else:
        value = importlib.import_module(where)
        parts = qualname.split(".")
    for part in parts:
        value = getattr(value, part)
    return value  # type: ignore[no-any-return]


def record_to_json(record: JobRecord) -> dict[str, Any]:
    """A job record as JSON for the child."""
    return dataclasses.asdict(record)


def record_from_json(data: dict[str, Any]) -> JobRecord:
    """The record back from its JSON form."""
    data["state"] = JobState(data["state"])
    data["tags"] = tuple(data["tags"])
    if data.get("parent") is not None:
        data["parent"] = ParentRef(**data["parent"])
    return JobRecord(**data)


class _Child:
    """One child process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def run(self, message: bytes) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(message + b"\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise ChildProcessError_(f"the job's process exited with code {code} before answering")
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class ProcessPool:
    """Up to `size` child processes, started on demand and reused between jobs."""

    def __init__(
        self, targets: Mapping[str, str], url: str, queue: str, size: int,
        hash_tag: str | None = None,
    ) -> None:
        self._argv = [sys.executable, "-m", "corral.isolation", orjson.dumps(targets).decode(),
                      url, queue, hash_tag or ""]
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()
        self._size = size

    async def _take(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.process.returncode is None:
                return child
            self._all.discard(child)
        process = await asyncio.create_subprocess_exec(
            *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        child = _Child(process)
        self._all.add(child)
        return child

    async def run(self, record: JobRecord) -> Any:
        """Run one job in a child; its return value, or the exception it raised."""
        child = await self._take()
        message = orjson.dumps(record_to_json(record))
        try:
            answer = await child.run(message)
        except BaseException:
            # Timed out (cancelled), or the child died: it cannot be trusted with another job.
            child.kill()
            self._all.discard(child)
            raise
        self._idle.append(child)
        return _unpack(answer)

    async def close(self) -> None:
        """Stop every child."""
        for child in list(self._all):
            if child.process.stdin is not None:
                child.process.stdin.close()
        for child in list(self._all):
            try:
                await asyncio.wait_for(child.process.wait(), 5)
            except TimeoutError:
                child.kill()
        self._all.clear()
        self._idle.clear()


def _unpack(answer: dict[str, Any]) -> Any:
    if "result" in answer:
        return codec.loads(answer["result"])
    kind, message = answer.get("kind"), answer.get("message", "job failed")
    if kind == "unrecoverable":
        raise UnrecoverableError(message)
    if kind == "rate_limited":
        raise RateLimited(float(answer.get("seconds", 0)))
    error = ChildProcessError_(message)
    error.__notes__ = [answer.get("stacktrace", "")]
    raise error


# -- the child ---------------------------------------------------------------------------


def _answer(result: Any) -> dict[str, Any]:
    return {"result": codec.dumps(result, "return_value")}


def _failure(exc: BaseException) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "message": f"{type(exc).__name__}: {exc}",
        "stacktrace": "".join(traceback.format_exception(exc)),
        "kind": "error",
    }
    if isinstance(exc, UnrecoverableError):
        answer["kind"] = "unrecoverable"
    elif isinstance(exc, RateLimited):
        answer.update(kind="rate_limited", seconds=exc.seconds)
    return answer


def child_main(targets_json: str, url: str, queue_name: str, hash_tag: str = "") -> None:
    """Serve jobs from stdin until it closes (run as `python -m corral.isolation`)."""
    from corral.job import Job
    from corral.queue import Queue
    from corral.sync import Job as SyncJob

    targets: dict[str, str] = orjson.loads(targets_json)
    processors = {name: _load(target) for name, target in targets.items()}
    loop = asyncio.new_event_loop()
    queue = Queue(queue_name, url=url, hash_tag=hash_tag or None)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        record = record_from_json(orjson.loads(line))
        processor = processors.get(record.name, processors.get("*"))
        job = Job(record, queue)
        try:
            if processor is None:
                raise UnrecoverableError(f"no processor for job name {record.name!r}")
            if inspect.iscoroutinefunction(processor):
                result = loop.run_until_complete(processor(job))
            else:
                result = processor(SyncJob(job, loop.run_until_complete))
            answer = _answer(result)
        except Exception as exc:
            answer = _failure(exc)
        out.write(orjson.dumps(answer) + b"\n")
        out.flush()
    loop.run_until_complete(queue.close())


if __name__ == "__main__":
    child_main(*sys.argv[1:5])
