"""`corral bench`: a tiny run on each store gives every workload, and mistakes exit 2.

The real measurements are far bigger (10,000 jobs); these runs only prove that every workload
runs end to end, with its worker processes, and reports sensible numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from corral.cli import cli
from corral.cli.bench import (
    BENCH_QUEUE,
    PAYLOAD_BYTES,
    WORKLOADS,
    child_main,
    delays_ms,
    padded_data,
    percentile,
)

SMALL = ("--jobs", "200", "--latency-jobs", "20", "--concurrency", "8", "--json")


def bench(*args: str) -> Result:
    """Run `corral bench ARGS` in-process."""
    return CliRunner().invoke(cli, ["bench", *args])


def test_tiny_run_reports_every_workload(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORRAL_URL", raising=False)
    on_redis = store_url.startswith("redis")
    # SQLite: the default, a temporary file; never the corral.db of the working directory.
    result = bench(*SMALL, *(("--url", store_url) if on_redis else ()))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == ("redis" if on_redis else "sqlite")
    assert list(summary["results"]) == list(WORKLOADS)
    results = summary["results"]
    for name in ("add", "add-bulk", "process-1", "process-n"):
        assert results[name]["jobs"] == 200
        assert results[name]["jobs_per_s"] > 0
        assert results[name]["seconds"] > 0
        # Only Redis has a server whose CPU the jobs cost.
        if on_redis:
            assert results[name]["redis_cpu_us_per_job"] > 0
        else:
            assert "redis_cpu_us_per_job" not in results[name]
    assert results["process-1"]["concurrency"] == 1
    assert results["process-n"]["concurrency"] == 8
    assert results["process-n"]["processes"] == 1
    # No store keeps a job in fewer bytes than its data.
    assert results["memory"]["jobs"] == 200
    assert results["memory"]["payload_bytes"] == PAYLOAD_BYTES
    assert PAYLOAD_BYTES < results["memory"]["bytes_per_job"] < 100_000
    for name in ("latency", "delayed"):
        assert results[name]["jobs"] == 20
        assert 0 < results[name]["p50_ms"] <= results[name]["p99_ms"] <= results[name]["max_ms"]
    assert results["delayed"]["early"] == 0
    assert results["delayed"]["min_ms"] >= 0
    if on_redis:
        with redis.Redis.from_url(store_url) as client:  # the bench queue is gone afterwards
            assert not list(client.scan_iter(f"corral:{{{BENCH_QUEUE}}}:*"))
    else:
        assert not list(tmp_path.iterdir())


def test_several_worker_processes_share_the_jobs(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_URL", raising=False)
    result = bench("--url", store_url, "--jobs", "100", "--concurrency", "4", "--only",
                   "process-n", "--processes", "2,1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["processes"] == [1, 2]
    results = summary["results"]
    assert list(results) == ["process-n", "process-n-2p"]
    assert results["process-n"]["processes"] == 1
    assert results["process-n-2p"]["processes"] == 2
    assert len(results["process-n-2p"]["ran_per_process"]) == 2
    assert sum(results["process-n-2p"]["ran_per_process"]) == 100
    for found in results.values():
        assert found["jobs"] == 100
        assert found["concurrency"] == 4
        assert found["jobs_per_s"] > 0


def test_a_worker_that_finds_nothing_reports_no_start(tmp_path: Path) -> None:
    out = tmp_path / "burst.json"
    child_main({"role": "burst", "url": f"sqlite:///{tmp_path}/empty.db", "queue": BENCH_QUEUE,
                "concurrency": 2, "out": str(out)})
    found = json.loads(out.read_text())
    assert found["ran"] == 0
    assert found["seen"] == []
    assert found["first"] is None
    assert found["end"] > 0


def test_only_runs_the_chosen_workloads_and_prints_a_table() -> None:
    result = bench("--jobs", "50", "--only", "add-bulk", "--only", "add,process-1")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "jobs/s" in line]
    assert len(rows) == 3
    assert "add, one by one" in rows[0]
    assert "add_bulk" in rows[1]
    assert "concurrency 1" in rows[2]
    assert "latency" not in result.stdout


def test_the_table_names_the_processes_and_the_bytes_per_job() -> None:
    result = bench("--jobs", "50", "--concurrency", "2", "--only", "memory,process-n",
                   "--processes", "1,2")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert "concurrency 2, 1 process " in rows[0]
    assert "concurrency 2, 2 processes" in rows[1]
    assert "B/job" in rows[2]
    assert f"{PAYLOAD_BYTES} B of JSON data" in rows[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--jobs", "0"), "'--jobs'"),
        (("--concurrency", "0"), "'--concurrency'"),
        (("--latency-jobs", "-1"), "'--latency-jobs'"),
        (("--only", "everything"), "unknown workload 'everything'"),
        (("--processes", "0"), "'--processes'"),
        (("--processes", "x"), "'--processes'"),
        (("--processes", "1,,2"), "'--processes'"),
        (("--url", "ftp://host/x"), "unsupported store URL scheme"),
        (("--url", "sqlite://"), "needs a file path"),
        (("--url", "redis://127.0.0.1:1/0"), "127.0.0.1:1"),
    ],
)
def test_mistakes_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = bench(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.stderr.splitlines()) == 1


def test_percentiles_and_delays() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([7.0], 0.99) == 7.0
    delays = delays_ms(500)
    assert delays == delays_ms(500)  # the same spread every run
    assert min(delays) >= 50
    assert max(delays) <= 500
    assert max(delays) - min(delays) > 400
    for i in (-1, 0, 9, 10, 199, 10**6):
        assert len(orjson.dumps(padded_data(i))) == PAYLOAD_BYTES
