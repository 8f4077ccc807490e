"""Rules about the code itself: time is read in one place, public names are exported."""

from __future__ import annotations

import re
from pathlib import Path

import corral

SOURCE = Path(corral.__file__).parent
TIME_READS = re.compile(
    r"\btime\.(time|time_ns|monotonic|perf_counter|sleep)\(|datetime\.(now|utcnow|today)\("
    r"|\bdate\.today\("
)


def test_only_the_clock_module_reads_time() -> None:
    offenders = [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in SOURCE.rglob("*.py")
        if path.name != "clock.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TIME_READS.search(line)
    ]
    assert offenders == [], f"read time through corral.clock instead: {offenders}"


def test_public_names_match_all() -> None:
    public = {name for name in dir(corral) if not name.startswith("_")}
    modules = {
        "backends", "cli", "clock", "codec", "errors", "events", "isolation", "job", "job_state",
        "locks", "monitoring", "options", "policy", "processors", "queue", "schedules", "sync",
        "testing", "web", "worker",
    }
    assert public - modules == set(corral.__all__) - {"__version__"}


def test_every_public_error_has_a_docstring() -> None:
    for name in corral.__all__:
        value = getattr(corral, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert value.__doc__, name
