"""The Lua transitions: read once from package data, shared helpers pasted in, headers read.

Each `lua/<name>.lua` opens with a header naming every `KEYS[i]` (a part of the queue's
key space, see `keys.PARTS`) and `ARGV[i]`. The loader takes the key order from that
header, so Python never lists a script's keys a second time. A script over several queues
(add_flow) takes that block of keys once per queue, one after the other. `lua/_<name>.lua` files are
helpers, pasted where a script says `--- @include "_<name>"`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Protocol

from corral.backends.redis.keys import PARTS

_INCLUDE: Final = re.compile(r'^--- @include "(_\w+)"$', re.MULTILINE)
_KEYS: Final = re.compile(r"^\s*KEYS\[(\d+)\]\s+([\w-]+)", re.MULTILINE)
_ARGV: Final = re.compile(r"^\s*ARGV\[(\d+)\]\s+(\w+)", re.MULTILINE)

Arg = str | int | float | bytes


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
    body = _INCLUDE.sub(lambda match: _read(f"{match.group(1)}.lua"), text)
    return Source(name, body, keys, argv)


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


def _check_args(src: Source, args: Sequence[Arg]) -> None:
    if len(args) != len(src.argv):
        raise TypeError(f"{src.name}.lua takes {len(src.argv)} arguments, not {len(args)}")


class AsyncScripts:
    """The scripts of one async client, each loaded once and then called by SHA."""

    def __init__(self, client: _AsyncRegistrar) -> None:
        self._client = client
        self._loaded: dict[str, _AsyncScript] = {}

    async def run(self, name: str, keys: Mapping[str, str], *args: Arg) -> Any:
        """Run transition `name` on the queue whose keys these are (EVALSHA, loading the
        script when Redis lacks it)."""
        return await self.run_over(name, [keys], *args)

    async def run_over(self, name: str, queues: Sequence[Mapping[str, str]], *args: Arg) -> Any:
        """Run transition `name` over several queues' keys (a block of KEYS each)."""
        script = self._loaded.get(name)
        src = source(name)
        if script is None:
            script = self._loaded[name] = self._client.register_script(src.text)
        _check_args(src, args)
        return await script(keys=src.key_names(*queues), args=args)


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
