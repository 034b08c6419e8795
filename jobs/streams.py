"""Server-Sent Events for one job, as an async iterator.

Served by the ASGI server, an open stream is a coroutine waiting on Redis
(``XREAD BLOCK``), not a thread: hundreds of streams cost no web workers.
Frames: ``status`` (status changed), ``progress``, and ``done`` (the whole
job, terminal) after which the stream closes. Every frame from the job's
Redis stream carries its entry id, so ``Last-Event-ID`` resumes exactly.
When Redis is unavailable or silent the row is polled instead: a client is
never left waiting for a job that has already finished.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aioredis
from django.conf import settings
from django.db import close_old_connections

from core.aio import in_thread, raise_if_cancelled
from core.redis import redis_async_client
from jobs import events
from jobs.models import Job
from jobs.representation import job_representation

_REDIS_RETRY_S = 3.0  # while Redis is down each stream polls the row this often

# Stream entries as this client returns them (bytes: no decode_responses).
_Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _frame(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@in_thread
def _snapshot(job_id: Any, base_url: str) -> tuple[bool, dict[str, Any]]:
    close_old_connections()  # pool threads keep connections; drop stale ones
    try:
        job = Job.objects.get(id=job_id)
        return job.is_terminal, job_representation(job, base_url=base_url)
    finally:
        close_old_connections()  # with the Postgres pool: give the connection back


async def _tail_id(client: aioredis.Redis, key: str) -> str:
    last = cast(_Entries, await client.xrevrange(key, count=1))
    return last[0][0].decode() if last else "0-0"


async def job_event_stream(*, job_id: Any, last_event_id: str, base_url: str) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.SSE_MAX_STREAM_S
    block_ms = int(settings.SSE_KEEPALIVE_S * 1000)
    key = events.stream_key(job_id)
    # XREAD BLOCK waits up to the keepalive: the socket timeout is longer.
    client = redis_async_client(socket_timeout=settings.SSE_KEEPALIVE_S + 5, socket_connect_timeout=1.0)
    try:
        yield "retry: 2000\n\n"
        last_progress: tuple[Any, ...] | None = None
        resuming = bool(last_event_id)
        if not resuming:
            # The stream's end first, then the row: an event that lands in
            # between is read from the stream, never missed.
            try:
                last_event_id = await _tail_id(client, key)
            except (aioredis.RedisError, OSError):
                last_event_id = "$"  # only what is appended from now on
            terminal, body = await _snapshot(job_id, base_url)
            if terminal:
                yield _frame(events.DONE, body, last_event_id)
                return
            last_progress = (body["status"], body["progress"], body["stage"])
            yield _frame(events.STATUS, body, last_event_id)
        # A reconnect (Last-Event-ID) first reads what is already there without
        # waiting, then looks at the row: a client that resumes after the last
        # event of a finished job (or after its stream expired) gets ``done``
        # at once instead of waiting out a keepalive for an event that will
        # never come.
        block: int | None = None if resuming else block_ms
        while loop.time() < deadline:
            raise_if_cancelled()  # the client hung up, though a read below swallowed it
            try:
                entries = cast("list[tuple[bytes, _Entries]] | None", await client.xread({key: last_event_id}, block=block, count=100))
            except (aioredis.RedisError, OSError):
                entries = None
                if block is not None:  # not on a reconnect's first look: the row answers now
                    await asyncio.sleep(_REDIS_RETRY_S)
            for entry_id, event, data in events.decode_entries(entries[0][1]) if entries else []:
                last_event_id = entry_id
                last_progress = (data.get("status"), data.get("progress"), data.get("stage"))
                yield _frame(event, data, entry_id)
                if event == events.DONE:
                    return
            block = block_ms
            if entries:
                continue
            # Quiet (or Redis down): the row is the record.
            terminal, body = await _snapshot(job_id, base_url)
            if terminal:
                yield _frame(events.DONE, body)
                return
            progress = (body["status"], body["progress"], body["stage"])
            if progress != last_progress:
                last_progress = progress
                yield _frame(events.PROGRESS, {field: body[field] for field in ("id", "status", "progress", "stage")})
            else:
                yield ": keepalive\n\n"
    finally:
        await client.aclose()
