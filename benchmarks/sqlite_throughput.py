"""Throughput and latency of corral on the embedded SQLite store: `corral bench` on a temp file.

The workloads live in `corral.cli.bench` (the `corral bench` command), so this script and the
command always measure the same thing: add one by one, add_bulk in chunks of 1000, noop jobs
processed by one worker process at concurrency 1 and 50, add→start latency with an idle
worker in another process, and how late delayed jobs start. See `corral bench --help`.

Usage: python benchmarks/sqlite_throughput.py [--jobs 10000] [--latency-jobs 500] [--json]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from corral.cli import cli


def main(argv: Sequence[str] | None = None) -> None:
    """Run `corral bench` with these arguments (no --url: a temporary SQLite file)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg == "--url" or arg.startswith("--url=") for arg in args):
        sys.exit("this script measures a temporary SQLite file; use `corral bench --url` instead")
    cli.main(["bench", *args], prog_name="sqlite_throughput.py")


if __name__ == "__main__":
    main()
