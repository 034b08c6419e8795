"""``Prefer: wait=N`` (RFC 7240) on job submissions, and waiting for a job
to finish on the event loop.

``POST /v1/tts`` and ``POST /v1/talking-head`` with ``Prefer: wait=N`` (or a
bare ``wait``: the maximum) answer with the finished job when it finishes
within N seconds (at most ``JOB_WAIT_MAX_S``), else with the usual 202. The
view submits as always in its pool thread and hands the wait to the event
loop (core.handoff): a waiting request is a coroutine blocked on the job's
Redis event stream (the ``done`` event every terminal job gets, jobs.events),
never a thread. The row is read before waiting and again whenever the stream
has been quiet for ``_RECHECK_S``, so a missed notice (Redis restarted, an
event trimmed) costs at most that long, never the whole wait.

Answers:
- finished within N s: **201 Created** with the finished job (succeeded,
  failed or canceled: the body says which) and ``Preference-Applied:
  wait=N``. 201 rather than 200: this request created the job and the job
  is complete, which is what 201 says; 202 stays "accepted, not finished".
- not finished: the usual 202 (``Location`` to poll), with
  ``Preference-Applied: wait=N`` since the server did wait.
- an ``Idempotency-Key`` replay (200) waits the same way and answers 200
  with the job as it is then; a dedup or cache hit is born finished and is
  answered at once (201).
- a client that hangs up gets nothing; its job goes on.
Under plain WSGI (no event loop serves the request) the preference is not
applied: 202 without ``Preference-Applied``, as the RFC allows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from django.conf import settings
from django.db import close_old_connections
from drf_spectacular.utils import OpenApiParameter
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.aio import in_thread, raise_if_cancelled
from core.handoff import Held, Receive, Send, disconnected, handoff_defer, response_headers, send_whole
from core.redis import redis_async_client
from jobs import events
from jobs.models import Job
from jobs.representation import job_representation

logger = logging.getLogger(__name__)

# A quiet stream for this long sends the waiter to the row (a missed notice).
_RECHECK_S = 5.0

# ``wait`` or ``wait=N`` among the comma-separated preferences (parameters after ";").
_WAIT = re.compile(r'^\s*wait\s*(?:=\s*"?\s*(\d{1,9})\s*"?)?\s*(?:;.*)?$', re.IGNORECASE)
_TERMINAL = frozenset(str(status) for status in Job.TERMINAL)


def prefer_wait_s(header: str | None) -> int | None:
    """Seconds asked for by a Prefer header's ``wait`` preference (capped at
    ``JOB_WAIT_MAX_S``; a bare ``wait`` is the cap), or None if not asked."""
    if not header:
        return None
    for preference in header.split(","):
        match = _WAIT.match(preference)
        if match:
            cap = int(settings.JOB_WAIT_MAX_S)
            return cap if match.group(1) is None else min(int(match.group(1)), cap)
    return None


def job_wait_apply(request: Request, response: Response, *, base_url: str) -> Response:
    """The submit view's answer under ``Prefer: wait``: as it is when the job
    is already finished (201 if created now), else handed to the event loop
    to wait (core.handoff)."""
    wait_s = prefer_wait_s(request.headers.get("Prefer"))
    body = response.data
    if wait_s is None or response.status_code not in (200, 202) or not isinstance(body, dict) or "id" not in body:
        return response
    created = response.status_code == 202  # not an Idempotency-Key replay (200)
    if body.get("status") in _TERMINAL:  # a dedup or cache hit: born finished
        response["Preference-Applied"] = f"wait={wait_s}"
        if created:
            response.status_code = 201
        return response
    if wait_s <= 0:
        return response
    continuation = functools.partial(
        _wait_then_answer, job_id=body["id"], base_url=base_url, wait_s=wait_s, deadline=time.monotonic() + wait_s, created=created
    )
    handoff_defer(continuation)
    return response


async def _wait_then_answer(
    held: Held, receive: Receive, send: Send, *, job_id: str, base_url: str, wait_s: int, deadline: float, created: bool
) -> None:
    """Event loop: wait for the job (or the client leaving), then answer."""
    waiting = asyncio.ensure_future(job_wait_terminal(job_id=job_id, deadline=deadline))
    gone = asyncio.ensure_future(disconnected(receive))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, gone):
            task.cancel()
        await asyncio.gather(waiting, gone, return_exceptions=True)
    if gone.done() and not gone.cancelled() and gone.exception() is None:
        return  # the client hung up: nobody to answer (the job goes on)
    applied = [(b"preference-applied", f"wait={wait_s}".encode())]
    try:
        terminal, body = await job_snapshot(job_id, base_url)
    except Exception:  # e.g. the database went away: the held answer is still true
        logger.warning("could not read a job after its wait; answering as submitted", exc_info=True)
        await send_whole(send, held.status, response_headers(held, add=applied), held.body)
        return
    status = 201 if terminal and created else held.status
    await send_whole(send, status, response_headers(held, add=applied), JSONRenderer().render(body))


@in_thread
def job_snapshot(job_id: Any, base_url: str) -> tuple[bool, dict[str, Any]]:
    """(terminal, representation) of the job, read in a short pool call."""
    close_old_connections()  # pool threads keep connections; drop stale ones
    try:
        job = Job.objects.select_related("tenant").get(id=job_id)
        return job.is_terminal, job_representation(job, base_url=base_url)
    finally:
        close_old_connections()  # with the Postgres pool: give the connection back


async def job_wait_terminal(*, job_id: Any, deadline: float) -> bool:
    """Until the job is terminal (True) or ``deadline`` (``time.monotonic()``,
    False). Woken by the job's ``done`` event; the row decides after every
    quiet ``_RECHECK_S`` and whenever Redis fails."""
    key = events.stream_key(job_id)
    client = redis_async_client(socket_timeout=_RECHECK_S + 5, socket_connect_timeout=1.0)
    try:
        # The stream's end first, then the row: a ``done`` appended in
        # between is read from the stream, never missed.
        last: str | None = await _tail_id(client, key)
        if (await job_snapshot(job_id, ""))[0]:
            return True
        while (remaining := deadline - time.monotonic()) > 0:
            raise_if_cancelled()  # the client hung up, though a read below swallowed it
            block_s = min(remaining, _RECHECK_S)
            if last is None:  # Redis unavailable: the row, at the re-check pace
                await asyncio.sleep(block_s)
            else:
                last, done, quiet = await _read(client, key, last, block_s)
                if done:
                    return True
                if not quiet:
                    continue
            if (await job_snapshot(job_id, ""))[0]:
                return True
        return False
    finally:
        await client.aclose()


async def _tail_id(client: aioredis.Redis, key: str) -> str | None:
    try:
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await client.xrevrange(key, count=1))
    except (aioredis.RedisError, OSError):
        logger.warning("job events unavailable; waiting on the job's row", exc_info=True)
        return None
    return entries[0][0].decode() if entries else "0-0"


async def _read(client: aioredis.Redis, key: str, last: str, block_s: float) -> tuple[str | None, bool, bool]:
    """One blocking read: (last id or None if Redis failed, saw done, was quiet)."""
    try:
        found = cast("list[tuple[bytes, Any]] | None", await client.xread({key: last}, block=max(1, int(block_s * 1000)), count=100))
    except (aioredis.RedisError, OSError):
        logger.warning("job events unavailable; waiting on the job's row", exc_info=True)
        return None, False, True
    if not found:
        return last, False, True
    for entry_id, event, _ in events.decode_entries(found[0][1]):
        last = entry_id
        if event == events.DONE:
            return last, True, False
    return last, False, False


def prefer_wait(method: Callable[..., Response]) -> Callable[..., Response]:
    """A submit view honouring ``Prefer: wait`` (outside ``@idempotent``, so a
    replay waits too)."""

    @functools.wraps(method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        return job_wait_apply(request, method(view, request, *args, **kwargs), base_url=request.build_absolute_uri("/"))

    return wrapper


PREFER_WAIT_PARAMETER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    description="wait=N (RFC 7240): answer with the finished job (201) if it finishes within N s (at most JOB_WAIT_MAX_S)",
)
