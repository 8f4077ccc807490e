"""BullMQ on Node.js, the system corral's design follows. node/bench.js does all the work."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from adapters.common import QUEUE, REDIS_URL

NAME = "bullmq-node"
BULK = True  # Queue.addBulk
HIGH = 10  # Worker option `concurrency`, in one Node process
SCRIPT = Path(__file__).resolve().parent.parent / "node" / "bench.js"


def _node(*args: object) -> Any:
    """Run a producer command of bench.js; its last line of output is JSON."""
    done = subprocess.run(
        ["node", str(SCRIPT), *map(str, args)], check=True, capture_output=True, text=True,
        env=dict(os.environ, BENCH_REDIS=REDIS_URL),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def external_enqueue(n: int, bulk: bool, chunk: int) -> float:
    """Seconds the Node producer took to add n jobs (connection set-up excluded)."""
    return float(_node("enqueue", n, "bulk" if bulk else "one", chunk)["seconds"])


def external_spaced(plan_file: str) -> None:
    """Add the jobs of a spaced plan (see run.py) from a Node producer."""
    _node("spaced", plan_file)


def worker(concurrency: int) -> list[str]:
    return ["node", str(SCRIPT), "worker", str(concurrency)]


def pending(r: Any) -> int:
    return int(r.llen(f"bull:{QUEUE}:wait"))


def settled(r: Any, n: int) -> int:
    return int(r.zcard(f"bull:{QUEUE}:completed"))  # completed jobs are kept by default
