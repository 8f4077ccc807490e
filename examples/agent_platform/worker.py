"""The worker process: `corral worker examples.agent_platform.worker:start --url URL`."""

from __future__ import annotations

import corral
from examples.agent_platform.jobs import setup, workers

__all__ = ["start"]


async def start(url: str | None = None) -> list[corral.Worker]:
    """Store the queues' settings and schedules, then hand the five workers to `corral worker`.

    `corral worker` calls this once in each worker process, with its `--url` (else
    `CORRAL_URL`, else `sqlite:///corral.db`) as `url`.
    """
    await setup(url)
    return workers(url)
