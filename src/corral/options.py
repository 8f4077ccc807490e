"""Job and queue options: the one place where user input is validated.

Every public entry point (Python, CLI, HTTP) funnels its options through these
classes, so a bad value is refused with `InvalidOptionError` before any I/O.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import orjson

from corral.codec import JSON
from corral.errors import InvalidOptionError

QUEUE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_NAME_LENGTH: Final = 256
MAX_PRIORITY: Final = 2**21
EVENT_LEVELS: Final = ("all", "final", "off")
DEFAULT_MAX_PAYLOAD: Final = 1_048_576
EventLevel = Literal["all", "final", "off"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class _Unset:
    """Marks an option that the caller did not give."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()


# -- scalar validators -----------------------------------------------------------------


MAX_DURATION: Final = 100 * 365.25 * 86400
"""The longest delay, timeout or period: beyond it a millisecond count outgrows the stores."""


def parse_duration(value: object, name: str, *, allow_zero: bool = True) -> float:
    """Seconds from a number, a `timedelta` or a string like `500ms`, `30s`, `5m`, `1h30m`."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be seconds or a timedelta, not a bool")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip(), name)
    else:
        raise InvalidOptionError(f"{name} must be seconds or a timedelta, not {value!r}")
    if not math.isfinite(seconds):
        raise InvalidOptionError(f"{name} must be finite, not {seconds}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidOptionError(f"{name} must be {'>= 0' if allow_zero else '> 0'}: {value!r}")
    if seconds > MAX_DURATION:
        raise InvalidOptionError(f"{name} must be at most 100 years, not {value!r}")
    return seconds


def _parse_duration_text(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise InvalidOptionError(
            f"{name}: {text!r} is not a duration (examples: 500ms, 30s, 5m, 2h, 1d, 1h30m)"
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """An int (bools refused) not below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(f"{name} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidOptionError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_queue_name(name: object) -> str:
    """A queue name matching `[A-Za-z0-9._-]{1,64}`."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidOptionError(
            f"queue name {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return name


def check_hash_tag(tag: object) -> str | None:
    """None, or a Redis hash tag following the queue-name rules."""
    if tag is not None and (not isinstance(tag, str) or not QUEUE_NAME.fullmatch(tag)):
        raise InvalidOptionError(
            f"hash_tag {tag!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return tag


def check_label(value: object, what: str) -> str:
    """A job name, job id or tag: 1-256 printable characters."""
    if not isinstance(value, str):
        raise InvalidOptionError(f"{what} must be a string, not {value!r}")
    if not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidOptionError(f"{what} must be 1-{MAX_NAME_LENGTH} characters long")
    if not value.isprintable():
        raise InvalidOptionError(f"{what} {value!r} contains control characters")
    return value


# -- option types ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before each retry; build it with the class methods."""

    kind: Literal["fixed", "exponential", "custom", "worker"]
    delay: float = 0.0
    cap: float | None = None
    jitter: float = 0.0
    delays: tuple[float, ...] = ()

    @classmethod
    def fixed(cls, delay: float | timedelta) -> Backoff:
        """Wait the same `delay` before every retry."""
        return cls("fixed", parse_duration(delay, "backoff delay"))

    @classmethod
    def exponential(
        cls, base: float | timedelta, cap: float | timedelta | None = None, jitter: float = 0.0
    ) -> Backoff:
        """Wait `base * 2**(n-1)` before retry n, at most `cap`, less up to `jitter` of it."""
        base_s = parse_duration(base, "backoff base")
        cap_s = None if cap is None else parse_duration(cap, "backoff cap")
        if isinstance(jitter, bool) or not isinstance(jitter, int | float):
            raise InvalidOptionError(f"backoff jitter must be a number in [0, 1], not {jitter!r}")
        if not 0.0 <= jitter <= 1.0:
            raise InvalidOptionError(f"backoff jitter must be in [0, 1], not {jitter}")
        return cls("exponential", base_s, cap_s, float(jitter))

    @classmethod
    def custom(cls, delays: Sequence[float | timedelta]) -> Backoff:
        """Wait the n-th of `delays` before retry n; the last one repeats."""
        if isinstance(delays, str | bytes) or not isinstance(delays, Sequence) or not delays:
            raise InvalidOptionError("Backoff.custom needs a non-empty list of delays")
        return cls("custom", delays=tuple(parse_duration(d, "backoff delay") for d in delays))

    @classmethod
    def by_worker(cls) -> Backoff:
        """Let the worker's `backoff=` callable decide (it lives with the processor code)."""
        return cls("worker")

    def to_json(self) -> dict[str, JSON]:
        """The stored form."""
        if self.kind == "fixed":
            return {"type": "fixed", "delay": self.delay}
        if self.kind == "exponential":
            return {"type": "exponential", "delay": self.delay, "cap": self.cap,
                    "jitter": self.jitter}
        if self.kind == "custom":
            return {"type": "custom", "delays": list(self.delays)}
        return {"type": "worker"}

    @classmethod
    def parse(cls, value: object) -> Backoff | None:
        """A Backoff from itself, None, or its JSON form (HTTP, CLI, stored options)."""
        if value is None or isinstance(value, Backoff):
            return value
        if not isinstance(value, Mapping):
            raise InvalidOptionError(f"unknown backoff {value!r}: use corral.Backoff")
        kind = value.get("type")
        extra = set(value) - {"type", "delay", "cap", "jitter", "delays"}
        if extra:
            raise InvalidOptionError(f"unknown backoff keys: {sorted(extra)}")
        if kind == "fixed":
            return cls.fixed(value.get("delay", 0))
        if kind == "exponential":
            return cls.exponential(value.get("delay", 0), value.get("cap"),
                                   value.get("jitter", 0.0))
        if kind == "custom":
            return cls.custom(value.get("delays", ()))
        if kind == "worker":
            return cls.by_worker()
        raise InvalidOptionError(
            f"unknown backoff type {kind!r}: fixed, exponential, custom or worker"
        )


@dataclass(frozen=True, slots=True)
class Keep:
    """Retention: keep the newest `count` finished jobs and/or those younger than `age`."""

    count: int | None = None
    age: float | None = None

    def __post_init__(self) -> None:
        if self.count is None and self.age is None:
            raise InvalidOptionError("Keep needs count, age or both")
        if self.count is not None:
            check_int(self.count, "Keep count", minimum=0)
        if self.age is not None:
            object.__setattr__(self, "age", parse_duration(self.age, "Keep age"))

    @classmethod
    def parse(cls, value: object, name: str) -> Keep:
        """Retention from `True` (remove at once), an int N, a Keep, or its JSON form."""
        if isinstance(value, Keep):
            return value
        if isinstance(value, bool):
            return cls(count=0) if value else _KEEP_ALL
        if isinstance(value, int):
            return cls(count=check_int(value, name, minimum=0))
        if isinstance(value, Mapping) and set(value) <= {"count", "age"}:
            return cls(count=value.get("count"), age=value.get("age"))
        raise InvalidOptionError(
            f"{name} must be True, False, an int or corral.Keep, not {value!r}"
        )

    def to_json(self) -> dict[str, JSON]:
        """The stored form."""
        return {"count": self.count, "age": self.age}


class _KeepAll(Keep):
    """`False`: keep every finished job (no trimming)."""

    def __init__(self) -> None:
        object.__setattr__(self, "count", None)
        object.__setattr__(self, "age", None)


_KEEP_ALL: Final[Keep] = _KeepAll()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` job starts in any `per` seconds (a sliding window)."""

    limit: int
    per: float = 1.0

    def __post_init__(self) -> None:
        check_int(self.limit, "RateLimit limit", minimum=1)
        object.__setattr__(self, "per", parse_duration(self.per, "RateLimit per", allow_zero=False))


@dataclass(frozen=True, slots=True)
class Dedupe:
    """Ignore adds while a job with this key is pending (or for `ttl`), optionally replacing."""

    key: str
    ttl: float | None = None
    replace: bool = False

    def __post_init__(self) -> None:
        check_label(self.key, "dedupe key")
        if self.ttl is not None:
            ttl = parse_duration(self.ttl, "dedupe ttl", allow_zero=False)
            object.__setattr__(self, "ttl", ttl)
        if not isinstance(self.replace, bool):
            raise InvalidOptionError("dedupe replace must be a bool")


def _check_run_at(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidOptionError(f"run_at must be an aware datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidOptionError("run_at must be an aware datetime (with a timezone)")
    return value


def _check_priority(value: object) -> int:
    priority = check_int(value, "priority")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidOptionError(f"priority must be within ±{MAX_PRIORITY}, not {priority}")
    return priority


def _check_tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidOptionError(f"tags must be a list of strings, not {value!r}")
    return tuple(dict.fromkeys(check_label(tag, "tag") for tag in value))


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be a bool, not {value!r}")
    return value


def _check_timeout(value: object) -> float | None:
    return None if value is None else parse_duration(value, "timeout", allow_zero=False)


def _check_group(value: object) -> str | None:
    return None if value is None else check_label(value, "group")


def _check_dedupe(value: object) -> Dedupe | None:
    if value is None or isinstance(value, Dedupe):
        return value
    if isinstance(value, Mapping):
        return Dedupe(**value)
    raise InvalidOptionError(f"dedupe must be corral.Dedupe, not {value!r}")


_VALIDATORS: Final[dict[str, Any]] = {
    "delay": lambda v: parse_duration(v, "delay"),
    "run_at": _check_run_at,
    "attempts": lambda v: check_int(v, "attempts", minimum=1),
    "backoff": Backoff.parse,
    "job_id": lambda v: None if v is None else check_label(v, "job_id"),
    "priority": _check_priority,
    "lifo": lambda v: _check_bool(v, "lifo"),
    "tags": _check_tags,
    "group": _check_group,
    "timeout": _check_timeout,
    "remove_on_complete": lambda v: Keep.parse(v, "remove_on_complete"),
    "remove_on_fail": lambda v: Keep.parse(v, "remove_on_fail"),
    "dedupe": _check_dedupe,
}
OPTION_NAMES: Final = frozenset(_VALIDATORS)
# Options that identify one job and so make no sense as a queue-wide default.
_PER_JOB_ONLY: Final = frozenset({"job_id", "run_at", "dedupe"})

LIBRARY_DEFAULTS: Final[dict[str, Any]] = {
    "attempts": 1,
    "backoff": None,
    "priority": 0,
    "lifo": False,
    "tags": (),
    "group": None,
    "timeout": None,
    "remove_on_complete": Keep(count=1000),
    "remove_on_fail": Keep(count=10000),
}


class JobOptions:
    """A validated set of `add` options; only the options given are set.

    Used for one job (`add`'s keywords), for a queue's stored `defaults`, and as a
    job's effective options once merged with the library defaults.
    """

    __slots__ = ("_values",)

    def __init__(
        self,
        *,
        delay: float | timedelta | str | _Unset = UNSET,
        run_at: datetime | _Unset = UNSET,
        attempts: int | _Unset = UNSET,
        backoff: Backoff | _Unset | None = UNSET,
        job_id: str | _Unset | None = UNSET,
        priority: int | _Unset = UNSET,
        lifo: bool | _Unset = UNSET,
        tags: Iterable[str] | _Unset = UNSET,
        group: str | _Unset | None = UNSET,
        timeout: float | timedelta | str | _Unset | None = UNSET,
        remove_on_complete: bool | int | Keep | _Unset = UNSET,
        remove_on_fail: bool | int | Keep | _Unset = UNSET,
        dedupe: Dedupe | _Unset | None = UNSET,
    ) -> None:
        given = {
            "delay": delay, "run_at": run_at, "attempts": attempts, "backoff": backoff,
            "job_id": job_id, "priority": priority, "lifo": lifo, "tags": tags, "group": group,
            "timeout": timeout, "remove_on_complete": remove_on_complete,
            "remove_on_fail": remove_on_fail, "dedupe": dedupe,
        }
        self._values: dict[str, Any] = {
            name: _VALIDATORS[name](value) for name, value in given.items() if value is not UNSET
        }
        if "delay" in self._values and "run_at" in self._values:
            raise InvalidOptionError("give delay or run_at, not both")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> JobOptions:
        """Options from keyword names (HTTP bodies, stored JSON); unknown names are refused."""
        if not options:  # most jobs give none: spare building and checking them all
            empty = cls.__new__(cls)
            empty._values = {}
            return empty
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise InvalidOptionError(f"unknown job options: {', '.join(sorted(unknown))}")
        return cls(**options)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of option `name`, or `default` when it was not given."""
        return self._values.get(name, default)

    def given(self) -> dict[str, Any]:
        """The options that were set, by name."""
        return dict(self._values)

    def __getattr__(self, name: str) -> Any:
        if name in OPTION_NAMES:
            return self._values.get(name, LIBRARY_DEFAULTS.get(name))
        raise AttributeError(name)

    def merged_over(self, base: JobOptions | None) -> JobOptions:
        """These options, with `base`'s filling in what these leave unset."""
        result = JobOptions()
        result._values = {**(base._values if base else {}), **self._values}
        if "delay" in self._values or "run_at" in self._values:
            # A job's own timing replaces the default's, whichever form either used.
            for name in ("delay", "run_at"):
                if name not in self._values:
                    result._values.pop(name, None)
        return result

    def check_as_defaults(self) -> JobOptions:
        """Refuse options that identify a single job (job_id, run_at, dedupe)."""
        per_job = _PER_JOB_ONLY & set(self._values)
        if per_job:
            raise InvalidOptionError(f"not allowed in queue defaults: {', '.join(sorted(per_job))}")
        return self

    def to_json(self) -> dict[str, JSON]:
        """The stored form of the options given."""
        return options_to_json(self._values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobOptions:
        """Options from their stored form."""
        values = dict(data)
        if isinstance(values.get("run_at"), str):
            values["run_at"] = datetime.fromisoformat(values["run_at"])
        if isinstance(values.get("tags"), list):
            values["tags"] = tuple(values["tags"])
        return cls.from_mapping(values)

    @staticmethod
    @functools.lru_cache(maxsize=512)
    def from_stored(text: str) -> JobOptions:
        """A job's effective options from their stored JSON text, which leaves out what
        equals the library defaults; memoised, as many jobs share the same options."""
        stored = JobOptions.from_json(orjson.loads(text))
        stored._values = {**LIBRARY_DEFAULTS, **stored._values}
        return stored

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobOptions) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self._values.items())
        return f"JobOptions({inner})"


def options_to_json(values: Mapping[str, Any]) -> dict[str, JSON]:
    """The stored form of already validated options, by name."""
    return {name: _option_to_json(value) for name, value in values.items()}


def stored_options(effective: Mapping[str, Any]) -> str:
    """A job's effective options as stored with it: JSON text of those that differ from
    the library defaults (most jobs store `{}`, which keeps every record small)."""
    differing = {
        name: value for name, value in effective.items()
        if name not in LIBRARY_DEFAULTS or value != LIBRARY_DEFAULTS[name]
    }
    return orjson.dumps(options_to_json(differing)).decode()


def _option_to_json(value: Any) -> JSON:
    if isinstance(value, Backoff | Keep):
        return value.to_json() if not isinstance(value, _KeepAll) else False
    if isinstance(value, Dedupe):
        return {"key": value.key, "ttl": value.ttl, "replace": value.replace}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


ON_FAILURE: Final = ("fail_parent", "ignore")
"""What a flow child's final failure does to its parent."""


@dataclass(frozen=True, slots=True, init=False)
class JobSpec:
    """One job for `add_bulk`, or a child of a flow: a name, its data and `add`'s options.

    As a child, `queue` names the queue it goes into (default: its parent's), `on_failure`
    says whether its final failure fails the parent ("fail_parent") or is recorded and
    ignored ("ignore"), and `children` nests a flow below it.
    """

    name: str
    data: Any
    options: JobOptions
    queue: str | None
    on_failure: str
    children: tuple[JobSpec, ...]

    def __init__(
        self,
        name: str,
        data: Any = None,
        *,
        queue: str | None = None,
        on_failure: str = "fail_parent",
        children: Iterable[JobSpec] | None = None,
        **options: Any,
    ) -> None:
        object.__setattr__(self, "name", check_label(name, "job name"))
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "options", JobOptions.from_mapping(options))
        object.__setattr__(self, "queue", None if queue is None else check_queue_name(queue))
        if on_failure not in ON_FAILURE:
            raise InvalidOptionError(f"on_failure must be one of {ON_FAILURE}, not {on_failure!r}")
        object.__setattr__(self, "on_failure", on_failure)
        object.__setattr__(self, "children", check_children(children))


def check_children(children: object) -> tuple[JobSpec, ...]:
    """A flow's children: an iterable of JobSpec (not a string or a mapping)."""
    if children is None:
        return ()
    if isinstance(children, str | bytes | Mapping) or not isinstance(children, Iterable):
        raise InvalidOptionError("children must be a list of corral.JobSpec")
    items = tuple(children)
    for index, child in enumerate(items):
        if not isinstance(child, JobSpec):
            raise InvalidOptionError(f"children[{index}] is not a corral.JobSpec")
    return items


def _check_defaults(value: object) -> JobOptions:
    if isinstance(value, Mapping):
        value = JobOptions.from_mapping(value)
    if value is None:
        value = JobOptions()
    if not isinstance(value, JobOptions):
        raise InvalidOptionError("defaults must be corral.JobOptions")
    return value.check_as_defaults()


def _check_events(value: object) -> str:
    if value not in EVENT_LEVELS:
        raise InvalidOptionError(f"events must be one of {EVENT_LEVELS}, not {value!r}")
    return str(value)


def _check_rate_limit(name: str) -> Any:
    def check(value: object) -> RateLimit | None:
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, Mapping) and set(value) <= {"limit", "per"}:
            return RateLimit(**value)
        raise InvalidOptionError(f"{name} must be corral.RateLimit or None, not {value!r}")

    return check


def _check_optional_count(name: str) -> Any:
    return lambda value: None if value is None else check_int(value, name, minimum=1)


_SETTINGS: Final[dict[str, Any]] = {
    "defaults": _check_defaults,
    "max_payload": lambda value: check_int(value, "max_payload", minimum=1),
    "events": _check_events,
    "limiter": _check_rate_limit("limiter"),
    "group_limiter": _check_rate_limit("group_limiter"),
    "group_concurrency": _check_optional_count("group_concurrency"),
    "concurrency": _check_optional_count("concurrency"),
}


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Settings of a whole queue, stored with it and obeyed by every process."""

    defaults: JobOptions = field(default_factory=JobOptions)
    max_payload: int = DEFAULT_MAX_PAYLOAD
    events: EventLevel = "final"
    limiter: RateLimit | None = None
    group_limiter: RateLimit | None = None
    group_concurrency: int | None = None
    concurrency: int | None = None

    def updated(self, changes: Mapping[str, Any]) -> QueueConfig:
        """A copy with `changes` applied after validating each of them."""
        unknown = set(changes) - set(_SETTINGS)
        if unknown:
            raise InvalidOptionError(f"unknown queue settings: {', '.join(sorted(unknown))}")
        values = {name: getattr(self, name) for name in _SETTINGS}
        values.update({name: _SETTINGS[name](value) for name, value in changes.items()})
        return QueueConfig(**values)

    def to_json(self) -> dict[str, JSON]:
        """The stored form."""
        def rate(limit: RateLimit | None) -> JSON:
            return None if limit is None else {"limit": limit.limit, "per": limit.per}

        return {
            "defaults": self.defaults.to_json(), "max_payload": self.max_payload,
            "events": self.events, "limiter": rate(self.limiter),
            "group_limiter": rate(self.group_limiter),
            "group_concurrency": self.group_concurrency, "concurrency": self.concurrency,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> QueueConfig:
        """Settings from their stored form (missing keys keep the library defaults)."""
        if not data:
            return cls()
        changes = dict(data)
        if isinstance(changes.get("defaults"), Mapping):
            changes["defaults"] = JobOptions.from_json(changes["defaults"])
        return cls().updated(changes)
