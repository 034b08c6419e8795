"""A speech job's audio, relayed to a client while it is made.

``job_audio_chunks`` yields the job's encoded audio from its first byte to
its last, in order, as one file:

- a finished job (a dedup or cache hit included) streams from storage at once;
- otherwise it asks the worker to publish (jobs/services/audio_publish.py)
  and relays the job's Redis stream with ``XREAD BLOCK`` on the event loop,
  no thread held while it waits. A job that joined an identical one still
  being made relays that one's stream;
- when the stream is quiet, Redis is gone or lost entries (each carries its
  offset), the row is the record: once the job has succeeded the rest comes
  from the stored result, which holds the same bytes (it is checked: the
  bytes already sent must be its beginning).

It raises ``AudioStreamError`` with a stable code when the job ends without
(all of its) audio: ``job_failed``, ``job_canceled``, ``result_expired``,
``stream_interrupted`` (an attempt stopped mid-speech after audio was sent;
the retried job makes other audio), ``stream_unavailable`` (not speech, or
the stream's time ran out).

A consumer that stops early (the client went away) does not cancel the
job, unless it was submitted with ``cancel_on_disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import close_old_connections

from core.aio import in_thread, raise_if_cancelled
from core.redis import redis_async_client
from jobs.models import Job
from jobs.services import audio_publish as publish

logger = logging.getLogger(__name__)

_READ_BYTES = 64 * 1024
_REDIS_RETRY_S = 0.5
# The first bytes a stream and its stored file may differ in: a WAV's sizes
# (engines/audio/io.py). Only the rest is compared when switching to storage.
_HEADER_BYTES = 44

_Entries = list[tuple[bytes, dict[bytes, bytes]]]


class AudioStreamError(Exception):
    """The job ended without (all of) its audio; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Row:
    status: str
    kind: str
    source_id: uuid.UUID  # whose audio stream this job's audio comes from
    result_key: str
    error_code: str
    error_message: str


@in_thread
def _row(job_id: Any, tenant_id: Any) -> _Row:
    close_old_connections()  # pool threads keep connections; drop stale ones
    fields = ("status", "kind", "id", "dedup_of_id", "result_key", "error_code", "error_message")
    try:
        values = Job.objects.filter(id=job_id, tenant_id=tenant_id).values_list(*fields).first()
    finally:
        close_old_connections()  # with the Postgres pool: give the connection back
    if values is None:
        raise AudioStreamError("job_not_found", "No such job.")
    status, kind, own_id, dedup_of_id, result_key, error_code, error_message = values
    # A follower waits (queued) on its source; once it succeeded it has its own result.
    source = dedup_of_id if dedup_of_id and status in Job.ACTIVE else own_id
    return _Row(status, kind, source, result_key, error_code, error_message)


async def _stored_chunks(key: str) -> AsyncGenerator[bytes, None]:
    """A stored result in pieces: one open, reads in a worker thread each."""
    try:
        handle = await in_thread(default_storage.open)(key, "rb")
    except FileNotFoundError:
        raise AudioStreamError("result_missing", "The result file is missing from storage.") from None
    try:
        while data := await in_thread(handle.read)(_READ_BYTES):
            yield data
    finally:
        await in_thread(handle.close)()


@in_thread
def _cancel(job_id: Any) -> None:
    from jobs.services import job_cancel

    close_old_connections()
    try:
        job = Job.objects.filter(id=job_id).first()
        if job is not None and job.status in Job.ACTIVE:
            job_cancel(job=job, actor="system:stream-disconnect", ip=None)
    finally:
        close_old_connections()  # with the Postgres pool: give the connection back


def _ended(row: _Row) -> AudioStreamError:
    if row.status == Job.Status.FAILED:
        return AudioStreamError("job_failed", f"The job failed: {row.error_code}: {row.error_message}")
    if row.status == Job.Status.CANCELED:
        return AudioStreamError("job_canceled", "The job was canceled.")
    return AudioStreamError("result_expired", "The job's result has expired and was deleted.")


class _Relay:
    """One client's stream: what was sent, and where it comes from."""

    def __init__(self, job_id: Any, tenant_id: Any) -> None:
        self.job_id = job_id
        self.tenant_id = tenant_id
        self.sent = 0
        self.digest = hashlib.sha256()  # of what was sent after the header

    def note(self, data: bytes) -> bytes:
        head = max(0, _HEADER_BYTES - self.sent)
        self.digest.update(data[head:])
        self.sent += len(data)
        return data

    async def from_storage(self, row: _Row) -> AsyncGenerator[bytes, None]:
        """The stored result past what was sent, which must be its beginning
        (but for the header: see _HEADER_BYTES)."""
        sent, digest, offset = self.sent, hashlib.sha256(), 0
        async for data in _stored_chunks(row.result_key):
            start, offset = offset, offset + len(data)
            if start < sent:  # this piece overlaps what was sent: compare it, do not send it again
                digest.update(data[max(0, _HEADER_BYTES - start) : sent - start])
                data = data[sent - start :]
                if offset >= sent and digest.digest() != self.digest.digest():
                    raise AudioStreamError("stream_interrupted", "The audio sent so far is not the stored result's; fetch the result.")
            if data:
                yield self.note(data)
        if offset < sent:
            raise AudioStreamError("stream_interrupted", "The audio sent so far is longer than the stored result; fetch the result.")


async def job_audio_chunks(*, job_id: uuid.UUID | str, tenant_id: Any) -> AsyncGenerator[bytes, None]:
    """The job's encoded audio, first byte to last (see the module docstring)."""
    relay = _Relay(job_id, tenant_id)
    row = await _row(job_id, tenant_id)
    if row.kind != Job.Kind.TTS:
        raise AudioStreamError("stream_unavailable", "Only speech jobs stream audio.")
    try:
        if row.status == Job.Status.SUCCEEDED:
            async for data in relay.from_storage(row):
                yield data
            return
        if row.status not in Job.ACTIVE:
            raise _ended(row)
        async for data in _live(relay, row):
            yield data
    except (GeneratorExit, asyncio.CancelledError):  # the consumer stopped: the client went away
        await _disconnected(relay)
        raise


async def _disconnected(relay: _Relay) -> None:
    """The stream stopped before the end: cancel the job if its submit asked."""
    client = redis_async_client(socket_timeout=5.0)  # a busy machine's Redis is slow, not gone
    try:
        asked = await client.get(publish.cancel_key(relay.job_id))
    except (aioredis.RedisError, OSError):
        asked = None
    finally:
        await client.aclose()
    if asked:
        try:
            await _cancel(relay.job_id)
        except Exception:
            logger.warning("could not cancel a job whose stream was dropped", exc_info=True)


async def _live(relay: _Relay, row: _Row) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.AUDIO_STREAM_MAX_S
    block_ms = int(settings.AUDIO_STREAM_POLL_S * 1000)
    client = redis_async_client(socket_timeout=settings.AUDIO_STREAM_POLL_S + 5)
    try:
        source, last_id, from_storage = row.source_id, "0-0", False
        await _want(client, source)
        while loop.time() < deadline:
            raise_if_cancelled()  # the client hung up, though a read below swallowed it
            entries: _Entries = []
            if not from_storage:
                try:
                    found = cast(
                        "list[tuple[bytes, _Entries]] | None",
                        await client.xread({publish.audio_key(source): last_id}, block=block_ms, count=100),
                    )
                    entries = found[0][1] if found else []
                except (aioredis.RedisError, OSError):
                    await asyncio.sleep(_REDIS_RETRY_S)
            for entry_id, fields in entries:
                last_id = entry_id.decode()
                kind = fields.get(b"t")
                if kind == publish.BEGIN and relay.sent:  # a new attempt after audio was sent
                    raise AudioStreamError("stream_interrupted", "The job restarted after its audio began; fetch the result.")
                if kind == publish.DATA and not from_storage:
                    if int(fields[b"o"]) != relay.sent:  # entries lost (Redis restarted): never relay a gap
                        from_storage = True
                        continue
                    yield relay.note(fields[b"d"])
                elif kind == publish.END:
                    outcome = fields[b"outcome"].decode()
                    if outcome == publish.COMPLETE and not from_storage:
                        return
                    if outcome == publish.FAILED:
                        code, message = fields[b"code"].decode(), fields[b"message"].decode()
                        raise AudioStreamError("job_failed", f"The job failed: {code}: {message}")
                    if outcome == publish.CANCELED:
                        raise AudioStreamError("job_canceled", "The job was canceled.")
                    if outcome == publish.INTERRUPTED and relay.sent:
                        raise AudioStreamError("stream_interrupted", "The job stopped after its audio began; fetch the result.")
                    if outcome == publish.OVERFLOW:
                        from_storage = True  # the rest once the job has stored it
            if entries:
                continue
            # Quiet, Redis gone, or the rest is in storage: the row is the record.
            row = await _row(relay.job_id, relay.tenant_id)
            if row.status == Job.Status.SUCCEEDED:
                async for data in relay.from_storage(row):
                    yield data
                return
            if row.status not in Job.ACTIVE:
                raise _ended(row)
            if row.source_id != source:  # the job it joined was canceled: it runs itself now
                if relay.sent:
                    raise AudioStreamError("stream_interrupted", "The job restarted after its audio began; fetch the result.")
                source, last_id = row.source_id, "0-0"
                await _want(client, source)
            elif from_storage:
                await asyncio.sleep(settings.AUDIO_STREAM_POLL_S)
        raise AudioStreamError("stream_unavailable", f"The stream passed its limit of {settings.AUDIO_STREAM_MAX_S:g} s; fetch the result.")
    finally:
        await client.aclose()


async def _want(client: aioredis.Redis, source_id: Any) -> None:
    """Ask the worker to publish (it looks once per sentence; see audio_publish)."""
    with contextlib.suppress(aioredis.RedisError, OSError):  # without: the stored result answers once the job finished
        await client.set(publish.want_key(source_id), b"1", ex=settings.AUDIO_STREAM_WANT_TTL_S)
