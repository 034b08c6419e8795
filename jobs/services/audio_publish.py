"""A speech job's encoded audio, published while it is made.

A listener (``POST /v1/tts`` with ``"stream": true``, or a client of
``GET /v1/jobs/{id}/audio-stream``) sets the job's *want* key; the worker
looks for it before it publishes anything (once per sentence until found),
so a job nobody listens to costs one EXISTS per sentence and no audio in
Redis. Once wanted, the worker appends to the job's audio stream:

- ``begin`` (the attempt; the stream is cleared first, so a retry's audio
  never follows a failed attempt's),
- ``data`` entries: everything encoded so far at once, then each block as it
  is encoded (their concatenation is the result file; engines/audio/io.py),
  each with its offset in the file, so a listener sees a gap (entries a
  restarted Redis lost) instead of relaying it,
- ``end``: ``complete``, ``failed`` (permanent engine error, with its code),
  ``canceled``, ``interrupted`` (a transient error: the job may be retried),
  or ``overflow`` (past AUDIO_STREAM_MAX_BYTES: the rest comes from storage).

Publishing never fails a job: after one Redis error the attempt publishes
nothing more (a gap must never reach a listener), and listeners continue from
the stored result once the job has succeeded (jobs/audio_stream.py).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings

from core.redis import redis_client

logger = logging.getLogger(__name__)

BEGIN, DATA, END = b"begin", b"data", b"end"
COMPLETE, FAILED, CANCELED, INTERRUPTED, OVERFLOW = "complete", "failed", "canceled", "interrupted", "overflow"


def audio_key(job_id: Any) -> str:
    return f"mynah:job-audio:{job_id}"


def want_key(job_id: Any) -> str:
    return f"mynah:job-audio-want:{job_id}"


def cancel_key(job_id: Any) -> str:
    return f"mynah:job-audio-cancel:{job_id}"


def audio_stream_request(*, job_id: Any, source_id: Any, cancel_on_disconnect: bool = False) -> None:
    """A listener is coming for ``job_id``'s audio, which ``source_id`` (the
    job itself, or the identical job it joined) makes. Best effort: without
    Redis the listener gets the stored result once the job has finished."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.set(want_key(source_id), b"1", ex=settings.AUDIO_STREAM_WANT_TTL_S)
        if cancel_on_disconnect:
            pipe.set(cancel_key(job_id), b"1", ex=settings.AUDIO_STREAM_WANT_TTL_S)
        pipe.execute()
    except redis.RedisError:
        logger.warning("could not request streamed audio; the stream will come from storage", extra={"job_id": str(job_id)})


class AudioPublisher:
    """The worker's side, one per attempt: the ``on_audio`` callback of the
    job's SpeechRequest, and ``end`` once the engine run is over."""

    def __init__(self, *, job_id: Any, attempt: int) -> None:
        self._key = audio_key(job_id)
        self._want = want_key(job_id)
        self._attempt = attempt
        self._wanted = False
        self._broken = False  # one Redis error: publish nothing more
        self._overflow = False
        self._unsent: list[bytes] = []
        self._size = 0
        self._published = 0  # bytes published: the next entry's offset

    def __call__(self, data: bytes) -> None:
        self._size += len(data)
        if self._broken or self._overflow:
            return
        if self._size > settings.AUDIO_STREAM_MAX_BYTES:
            self._overflow = True
            self._unsent.clear()
            if self._wanted:
                self._append([(END, {b"outcome": OVERFLOW.encode()})])
            return
        self._unsent.append(data)
        if self._is_wanted():
            data = b"".join(self._unsent)
            self._unsent.clear()
            self._append([(DATA, {b"d": data, b"o": str(self._published).encode()})])
            self._published += len(data)

    def end(self, outcome: str, *, code: str = "", message: str = "") -> None:
        if self._broken or not self._is_wanted():
            return
        if self._overflow:
            outcome = OVERFLOW
        self._append([(END, {b"outcome": outcome.encode(), b"code": code.encode(), b"message": message[:500].encode()})])

    def _is_wanted(self) -> bool:
        if not self._wanted and not self._broken:
            try:
                if redis_client().exists(self._want):
                    self._wanted = True
                    self._begin()
            except redis.RedisError:
                self._fail()
        return self._wanted and not self._broken

    def _begin(self) -> None:
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.delete(self._key)
            pipe.xadd(self._key, {b"t": BEGIN, b"attempt": str(self._attempt).encode()})
            pipe.expire(self._key, settings.AUDIO_STREAM_TTL_S)
            pipe.execute()
        except redis.RedisError:
            self._fail()

    def _append(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if self._broken:
            return
        try:
            pipe = redis_client().pipeline(transaction=False)
            for kind, fields in entries:
                entry: dict[Any, Any] = {b"t": kind, **fields}
                pipe.xadd(self._key, entry)
            pipe.expire(self._key, settings.AUDIO_STREAM_TTL_S)
            pipe.execute()
        except redis.RedisError:
            self._fail()

    def _fail(self) -> None:
        self._broken = True
        logger.warning("could not publish streamed audio; listeners continue from storage")
