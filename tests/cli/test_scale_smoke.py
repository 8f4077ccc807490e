"""`python -m benchmarks.scale`: a tiny run on each store measures every level, end to end.

The real runs fill up to a million jobs of each kind; this one only proves that every step
runs, the JSON holds a sensible number for each cost, and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

PROJECT = Path(__file__).resolve().parents[2]
TINY = ("--sizes", "200,50", "--sample", "50", "--probes", "10", "--concurrency", "8", "--json")


def test_tiny_run_measures_every_level(store_url: str, tmp_path: Path) -> None:
    on_redis = store_url.startswith("redis")
    # SQLite: the default, a temporary file, made under a directory this test can inspect.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    env.pop("CORRAL_URL", None)
    command = [sys.executable, "-m", "benchmarks.scale", *TINY,
               *(("--url", store_url) if on_redis else ())]
    result = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True,
                            timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["store"] == ("redis" if on_redis else "sqlite")
    levels = summary["levels"]
    assert [level["level"] for level in levels] == [50, 200]  # increasing, whatever the order
    for level in levels:
        assert level["early"] == 0
        for key in ("fill_waiting_us", "add_us", "add_bulk_us", "process_us", "late_p50_ms",
                    "bytes_per_waiting", "bytes_per_delayed"):
            assert level[key] > 0, key
        assert level["late_p50_ms"] <= level["late_p99_ms"]
        assert (level["process_store_cpu_us"] is not None) == on_redis
        assert (level["file_bytes_per_queued"] is None) == on_redis
    assert summary["ratios"]["add_us"] > 0
    if on_redis:
        with redis.Redis.from_url(store_url) as client:  # the queue is gone afterwards
            assert not list(client.scan_iter("corral:{corral-scale}:*"))
    else:
        assert not list(scratch.iterdir())
