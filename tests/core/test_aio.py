"""core.aio.in_thread: blocking calls from the event loop that do not lose a cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from core.aio import in_thread, raise_if_cancelled


async def _cancel_while_the_thread_runs(call) -> tuple[BaseException | None, list[str]]:
    started, release = threading.Event(), threading.Event()
    carried_on: list[str] = []

    def blocking() -> str:
        started.set()
        release.wait(5)
        return "read"

    async def stream() -> None:
        carried_on.append(await call(blocking)())  # then it would go on streaming

    task = asyncio.create_task(stream())
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()  # the client hung up
    release.set()
    try:
        await task
    except BaseException as exc:
        return exc, carried_on
    return None, carried_on


def test_a_cancellation_during_the_thread_is_raised_once_it_returns():
    outcome, carried_on = asyncio.run(_cancel_while_the_thread_runs(in_thread))
    assert isinstance(outcome, asyncio.CancelledError)
    assert carried_on == []


async def _swallowing_callee() -> str:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        return "swallowed"  # what a library below the loop may do
    return "slept"


async def _loop_after_a_swallowed_cancel(check) -> tuple[BaseException | None, list[str]]:
    carried_on: list[str] = []

    async def stream() -> None:
        carried_on.append(await _swallowing_callee())
        await check()
        carried_on.append("went on streaming")

    task = asyncio.create_task(stream())
    await asyncio.sleep(0.05)
    task.cancel()  # the client hung up
    try:
        await task
    except BaseException as exc:
        return exc, carried_on
    return None, carried_on


@pytest.mark.parametrize("check", ["raise_if_cancelled", "in_thread"])
def test_a_cancellation_a_callee_swallowed_still_stops_the_loop(check):
    async def checked() -> None:
        if check == "raise_if_cancelled":
            raise_if_cancelled()
        else:
            await in_thread(lambda: None)()

    outcome, carried_on = asyncio.run(_loop_after_a_swallowed_cancel(checked))
    assert isinstance(outcome, asyncio.CancelledError)
    assert carried_on == ["swallowed"]


def test_without_the_check_the_loop_goes_on():
    """The premise: a swallowed cancellation is otherwise lost."""

    async def unchecked() -> None:
        await asyncio.sleep(0)

    outcome, carried_on = asyncio.run(_loop_after_a_swallowed_cancel(unchecked))
    assert outcome is None and carried_on == ["swallowed", "went on streaming"]


def test_results_and_errors_pass_through():
    assert asyncio.run(in_thread(lambda a, b=0: a + b)(1, b=2)) == 3
    with pytest.raises(ZeroDivisionError):
        asyncio.run(in_thread(lambda: 1 / 0)())
