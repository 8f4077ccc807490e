"""Processors for the isolation tests: importable top-level functions, as children need."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time

import corral


def double(job: corral.sync.Job) -> int:
    job.update_progress(50)
    job.log(f"running in {os.getpid()}")
    return int(job.data["n"]) * 2


async def double_async(job: corral.Job) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"pid": os.getpid(), "n": job.data["n"] * 2}


def stuck(job: corral.sync.Job) -> None:
    time.sleep(30)  # stands for a C call that never yields


def exits(job: corral.sync.Job) -> None:
    os._exit(3)


def segfaults(job: corral.sync.Job) -> None:
    ctypes.string_at(0)


def raises(job: corral.sync.Job) -> None:
    raise ValueError("bad input in the child")


def gives_up(job: corral.sync.Job) -> None:
    raise corral.UnrecoverableError("no point retrying")


def pid(job: corral.sync.Job) -> int:
    return os.getpid()
