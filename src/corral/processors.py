"""Processors: how a worker finds the function for a job and how it calls it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from corral.errors import InvalidOptionError, UnrecoverableError
from corral.options import check_label

__all__ = ["Processor", "check_processors", "is_async_callable", "no_processor"]

Processor = Callable[..., Any]


def is_async_callable(function: object) -> bool:
    """True for coroutine functions, also behind partials and callable objects."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - objects defining async __call__
    return call is not None and not inspect.isfunction(function) and (
        inspect.iscoroutinefunction(call)
    )


def check_processors(processor: Processor | Mapping[str, Processor]) -> dict[str, Processor]:
    """The processors by job name ("*" for one callable that takes every job)."""
    if isinstance(processor, Mapping):
        if not processor:
            raise InvalidOptionError("the processor mapping is empty")
        for name, function in processor.items():
            check_label(name, "job name")
            if not callable(function):
                raise InvalidOptionError(f"the processor for {name!r} is not callable")
        return dict(processor)
    if not callable(processor):
        raise InvalidOptionError("processor must be a callable or a mapping of name to callable")
    return {"*": processor}


def no_processor(name: str, processors: Mapping[str, Processor]) -> Exception:
    """The error that fails a job whose name has no processor."""
    known = ", ".join(sorted(processors)) or "none"
    return UnrecoverableError(f"no processor for job name {name!r} (known: {known})")
