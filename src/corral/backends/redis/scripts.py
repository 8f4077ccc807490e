"""The Lua transitions: read once from package data, shared helpers pasted in, headers read;
on a single Redis they run as the functions of one library (see `library`).

Each `lua/<name>.lua` opens with a header naming every `KEYS[i]` (a part of the queue's
key space, see `keys.PARTS`) and `ARGV[i]`. The loader takes the key order from that
header, so Python never lists a script's keys a second time. A script over several queues
(add_flow) takes that block of keys once per queue, one after the other. `lua/_<name>.lua` files are
helpers, pasted where a script says `--- @include "_<name>"`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Protocol

import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import AbstractConnection

from corral.backends.redis.keys import PARTS

_INCLUDE: Final = re.compile(r'^--- @include "(_\w+)"$', re.MULTILINE)
_KEYS: Final = re.compile(r"^\s*KEYS\[(\d+)\]\s+([\w-]+)", re.MULTILINE)
_ARGV: Final = re.compile(r"^\s*ARGV\[(\d+)\]\s+(\w+)", re.MULTILINE)

Arg = str | int | float | bytes

log = logging.getLogger("corral")


@dataclass(frozen=True, slots=True)
class Source:
    """One transition's script, ready to load, and the names of its keys and arguments."""

    name: str
    text: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]

    def key_names(self, *queues: Mapping[str, str]) -> list[str]:
        """The KEYS of a call on these queues (each its part -> key map), in the header's
        order, one block per queue."""
        return [keys[part] for keys in queues for part in self.keys]


def _read(file: str) -> str:
    return resources.files("corral.backends.redis").joinpath("lua", file).read_text("utf-8")


def _numbered(found: list[tuple[str, str]], script: str, kind: str) -> tuple[str, ...]:
    numbers = [int(number) for number, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{script}.lua: {kind} in its header are not numbered 1..n")
    return tuple(name for _, name in found)


@functools.cache
def source(name: str) -> Source:
    """The script `lua/<name>.lua` with its helpers pasted in."""
    text = _read(f"{name}.lua")
    header = text.split("]]", 1)[0]
    keys = _numbered(_KEYS.findall(header), name, "KEYS")
    unknown = set(keys) - set(PARTS)
    if unknown:
        raise RuntimeError(f"{name}.lua: unknown key parts {sorted(unknown)}")
    argv = _numbered(_ARGV.findall(header), name, "ARGV")
    helpers = [_chunks(_read(f"{include}.lua")) for include in _INCLUDE.findall(text)]
    needed = _needed(_NAME.findall(_INCLUDE.sub("", text)), helpers)
    pasted = iter(
        "".join(chunk.text for chunk in chunks if chunk.defines & needed) for chunks in helpers
    )
    body = _INCLUDE.sub(lambda match: next(pasted), text)
    return Source(name, body, keys, argv)


# -- pasting only the helpers a script uses ---------------------------------------------------
#
# Every call of a script runs its whole top level again, so each helper pasted in costs a
# closure per call, and every script loaded costs Lua memory that Redis' garbage collector
# walks on every cycle (with all scripts loaded, about a third of a small transition's time).
# So a script gets only the top-level definitions it reaches. A helper file is a run of
# top-level statements, each starting at column 0 (`local ...`, or `name = ...` to assign a
# forward-declared local); a statement is kept when it defines a name that the script, or a
# statement kept, mentions anywhere (comments and strings included: keeping too much is
# harmless), in its file's order.

_NAME: Final = re.compile(r"[A-Za-z_]\w*")
_STATEMENT: Final = re.compile(
    r"^(?:local\s+function\s+(\w+)|local\s+(\w+(?:\s*,\s*\w+)*)|(\w+)\s*=)", re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One top-level statement of a helper file, with the comment lines before it."""

    text: str
    defines: frozenset[str]
    mentions: frozenset[str]


def _chunks(text: str) -> list[_Chunk]:
    """A helper file's top-level statements (its opening comment block left out)."""
    if text.startswith("--[["):
        text = text[text.index("]]") + 2:].lstrip("\n")
    chunks: list[_Chunk] = []
    lines: list[str] = []  # the statement being read, then the comment lines after it
    comments = 0  # how many of `lines` are comment lines right before the next statement
    defines: frozenset[str] = frozenset()

    def close(upto: int) -> None:
        body = "".join(lines[:upto])
        if body.strip():
            chunks.append(_Chunk(body, defines, frozenset(_NAME.findall(body))))

    for line in text.splitlines(keepends=True):
        match = _STATEMENT.match(line)
        if match:
            close(len(lines) - comments)
            del lines[: len(lines) - comments]
            names = match.group(1) or match.group(2) or match.group(3)
            defines = frozenset(part.strip() for part in names.split(","))
        lines.append(line)
        comments = comments + 1 if line.startswith("--") else 0
    close(len(lines))
    return chunks


def _needed(mentioned: list[str], helpers: Sequence[list[_Chunk]]) -> frozenset[str]:
    """The helper names reachable from the names a script mentions."""
    defining: dict[str, list[_Chunk]] = {}
    for chunks in helpers:
        for chunk in chunks:
            for defined in chunk.defines:
                defining.setdefault(defined, []).append(chunk)
    needed: set[str] = set()
    todo = [word for word in mentioned if word in defining]
    while todo:
        word = todo.pop()
        if word in needed:
            continue
        needed.add(word)
        for chunk in defining[word]:
            todo.extend(w for w in chunk.mentions if w in defining and w not in needed)
    return frozenset(needed)


# -- one function library for a single Redis -------------------------------------------------
#
# A script's top level runs on every call: with the helpers settle needs, defining them
# costs Redis more than an empty settle's own work. A Redis 7 function library runs its top
# level once, at FUNCTION LOAD: the helpers are defined once, and each transition is a
# function calling them. Its name carries a hash of its code, so processes of different
# versions on one Redis each call their own (an earlier version's library stays loaded,
# ~100 KB, until `FUNCTION DELETE corral_<hash>`).

_HELPER_ORDER: Final = ("_lib", "_claim", "_events", "_dedupe", "_flows", "_workers")
"""Every helper file, each after those it builds on."""


@dataclass(frozen=True, slots=True)
class Library:
    """Every transition as a function of one library: its code and the functions' names."""

    code: str
    prefix: str

    def function(self, name: str) -> str:
        """The function of transition `name`."""
        return self.prefix + name


@functools.cache
def library() -> Library:
    """The library of every transition, for FUNCTION LOAD."""
    parts = [_read(f"{helper}.lua") for helper in _HELPER_ORDER]
    for name in names():
        body = _INCLUDE.sub("", _read(f"{name}.lua"))
        parts.append(
            f"redis.register_function('@@{name}', function(KEYS, ARGV)\n"
            f"begin_call()\n{body}\nend)\n"
        )
    code = "\n".join(parts)
    tag = sha1(code)[:16]
    prefix = f"corral_{tag}_"
    return Library(f"#!lua name=corral_{tag}\n" + code.replace("'@@", f"'{prefix}"), prefix)


def names() -> list[str]:
    """Every transition script shipped (helpers excluded)."""
    folder = resources.files("corral.backends.redis").joinpath("lua")
    return sorted(
        entry.name[: -len(".lua")]
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    )


class _AsyncScript(Protocol):
    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any: ...


class _SyncScript(Protocol):
    def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any: ...


class _AsyncRegistrar(Protocol):
    def register_script(self, script: str) -> Any: ...

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...


def _check_args(src: Source, args: Sequence[Arg]) -> None:
    if len(args) != len(src.argv):
        raise TypeError(f"{src.name}.lua takes {len(src.argv)} arguments, not {len(args)}")


def bulk(value: Arg) -> bytes:
    """One argument of a command in the Redis protocol (RESP bulk string)."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, int):
        data = b"%d" % value
    else:
        data = repr(value).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _pack(*args: Arg) -> bytes:
    """A whole command in the Redis protocol."""
    return b"*%d\r\n%b" % (len(args), b"".join([bulk(arg) for arg in args]))


def sha1(text: str) -> str:
    """A script's SHA1, as EVALSHA names it."""
    return hashlib.sha1(text.encode()).hexdigest()


_HEADS_KEPT: Final = 4096
"""Packed command heads kept per client (one per script and queue used)."""


class AsyncScripts:
    """The scripts of one async client, each loaded once and then called by SHA.

    On a single Redis (not a cluster) the calls skip redis-py's command machinery, which
    costs more than the round trip itself: each FCALL (or EVALSHA) is sent as bytes packed
    here, its head (the function or SHA, and every key) packed once per transition and
    queue, on connections of this object's own (`Lanes`). A cluster client routes by key,
    so it runs the scripts through redis-py.
    """

    def __init__(self, client: _AsyncRegistrar) -> None:
        self._client = client
        self._loaded: dict[str, _AsyncScript] = {}
        self._lanes = Lanes(client) if isinstance(client, redis.asyncio.Redis) else None
        self._heads: dict[tuple[str, tuple[str, ...], bool], bytes] = {}
        self._functions = True
        """Whether to call the library's functions (False after Redis refused them: a
        version before 7, or an ACL without FUNCTION): EVALSHA then."""

    async def run(self, name: str, keys: Mapping[str, str], *args: Arg) -> Any:
        """Run transition `name` on the queue whose keys these are (FCALL, or EVALSHA where
        Redis refuses functions; loading the library or script when Redis lacks it)."""
        return await self.run_over(name, (keys,), *args)

    async def run_over(self, name: str, queues: Sequence[Mapping[str, str]], *args: Arg) -> Any:
        """Run transition `name` over several queues' keys (a block of KEYS each)."""
        src = source(name)
        _check_args(src, args)
        if self._lanes is None:
            script = self._loaded.get(name)
            if script is None:
                script = self._loaded[name] = self._client.register_script(src.text)
            return await script(keys=src.key_names(*queues), args=args)
        packed_args = b"".join([bulk(arg) for arg in args])
        if self._functions:
            try:
                return await self._lanes.fcall(
                    self._head(name, queues, True) + packed_args, library().code
                )
            except FunctionsRefused as refused:
                log.info("Redis refused function libraries (%s): running scripts instead",
                         refused)
                self._functions = False
        return await self._lanes.evalsha(self._head(name, queues, False) + packed_args, src.text)

    def _head(self, name: str, queues: Sequence[Mapping[str, str]], function: bool) -> bytes:
        """A call of transition `name` on these queues, packed but for its arguments."""
        # Every key of a queue starts with its prefix, so its `meta` key names the queue.
        which = (name, tuple(keys["meta"] for keys in queues), function)
        head = self._heads.get(which)
        if head is None:
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            src = source(name)
            keys = src.key_names(*queues)
            if function:
                called = (bulk("FCALL"), bulk(library().function(name)))
            else:
                called = (bulk("EVALSHA"), bulk(sha1(src.text)))
            head = self._heads[which] = b"".join([
                b"*%d\r\n" % (3 + len(keys) + len(src.argv)), *called, bulk(len(keys)),
                *(bulk(key) for key in keys),
            ])
        return head

    async def command(self, *args: Arg) -> Any:
        """Run one plain command; its reply as Redis sent it (no redis-py parsing)."""
        if self._lanes is None:
            return await self._client.execute_command(*args)
        return await self._lanes.execute(_pack(*args))

    async def close(self) -> None:
        """Close the connections of this object's own."""
        if self._lanes is not None:
            await self._lanes.close()


def _closed_by_server(conn: AbstractConnection) -> bool:
    """Whether the server closed this idle connection (its reader saw the end)."""
    reader = getattr(conn, "_reader", None)
    return isinstance(reader, asyncio.StreamReader) and reader.at_eof()


class FunctionsRefused(Exception):
    """Redis cannot load or call function libraries."""


class Lanes:
    """Connections of a single Redis for packed commands, each used by one call at a time.

    A call takes an idle connection (or opens one), so concurrent calls never wait for
    each other. The connections are the client's kind (TCP, TLS, Unix socket; its
    credentials and database) without a socket timeout: one `asyncio.timeout` bounds a
    whole call instead (connecting, sending and reading), which costs less than redis-py's
    per-read timers. A connection that fails or is cancelled mid-call is disconnected by
    redis-py, and connects again on its next use.
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        pool = client.connection_pool
        self._client = client
        self._make = functools.partial(
            pool.connection_class, **{**pool.connection_kwargs, "socket_timeout": None}
        )
        self._timeout: float | None = pool.connection_kwargs.get("socket_timeout")
        self._idle: list[AbstractConnection] = []
        self._all: set[AbstractConnection] = set()

    async def execute(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (a ResponseError raised)."""
        conn = self._idle.pop() if self._idle else self._open()
        try:
            async with asyncio.timeout(self._timeout):
                if _closed_by_server(conn):
                    await conn.disconnect()  # e.g. a restart: connect again, nothing was sent
                await conn.send_packed_command(packed, check_health=False)
                return await conn.read_response()
        except redis.exceptions.ResponseError:
            raise
        except BaseException as exc:
            await conn.disconnect(nowait=True)  # a reply may still be on its way
            if not isinstance(exc, asyncio.CancelledError):
                await self._forget_idle()
            raise
        finally:
            if conn in self._all:  # else closed meanwhile
                self._idle.append(conn)

    async def _forget_idle(self) -> None:
        """After a failed call: the idle connections, ours and the client's, most likely
        failed with it (a restart, a failover): let their next use connect afresh."""
        for conn in self._idle:
            await conn.disconnect(nowait=True)
        await self._client.connection_pool.disconnect(inuse_connections=False)

    async def evalsha(self, packed: bytes, text: str) -> Any:
        """Run a packed EVALSHA, loading its script first when Redis lacks it."""
        try:
            return await self.execute(packed)
        except redis.exceptions.NoScriptError:
            await self.execute(_pack("SCRIPT", "LOAD", text))
            return await self.execute(packed)

    async def fcall(self, packed: bytes, code: str) -> Any:
        """Run a packed FCALL, loading the library `code` first when Redis lacks it (a
        restart without persistence, FUNCTION FLUSH, a new version). Raises FunctionsRefused
        when Redis cannot have function libraries."""
        try:
            return await self.execute(packed)
        except redis.exceptions.ResponseError as exc:
            if "function not found" not in str(exc).lower():
                if "unknown command" in str(exc).lower():
                    raise FunctionsRefused(str(exc)) from None
                raise
        try:
            await self.execute(_pack("FUNCTION", "LOAD", "REPLACE", code))
        except redis.exceptions.ResponseError as exc:
            raise FunctionsRefused(str(exc)) from None
        return await self.execute(packed)

    def _open(self) -> AbstractConnection:
        conn: AbstractConnection = self._make()
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        """Disconnect every connection (a later call opens new ones)."""
        conns, self._all, self._idle = self._all, set(), []
        for conn in conns:
            await conn.disconnect()


class SyncScripts:
    """The scripts of one blocking client (the lock keeper's)."""

    def __init__(self, client: _AsyncRegistrar) -> None:
        self._client = client
        self._loaded: dict[str, _SyncScript] = {}

    def run(self, name: str, keys: Mapping[str, str], *args: Arg) -> Any:
        """Run transition `name` on the queue whose keys these are."""
        script = self._loaded.get(name)
        src = source(name)
        if script is None:
            script = self._loaded[name] = self._client.register_script(src.text)
        _check_args(src, args)
        return script(keys=src.key_names(keys), args=args)
