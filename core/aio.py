"""Event-loop code that must not outlive a cancellation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async

P = ParamSpec("P")
R = TypeVar("R")


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop, even where a
    callee swallowed the CancelledError itself. Django cancels a stream's
    task when its client hangs up; on this stack (redis-py 8.1's blocking
    reads, asgiref's thread calls) that cancellation was now and then
    absorbed below the stream's loop, which then went on relaying to a
    closed socket until the job ended, and never ran its
    cancel-on-disconnect. Long-lived loops call this once per turn."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def in_thread(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``sync_to_async(func, thread_sensitive=False)`` that raises a
    cancellation of the calling task once the thread returns (see
    :func:`raise_if_cancelled`), rather than handing back a result the
    caller would act on."""
    call = sync_to_async(func, thread_sensitive=False)

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        result = await call(*args, **kwargs)
        raise_if_cancelled()
        return result

    return wrapper
