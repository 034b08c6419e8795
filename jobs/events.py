"""Live job events: one capped Redis stream per job.

Workers (and the cancel API) append; ``GET /v1/jobs/{id}/events`` reads with
``XREAD BLOCK`` from the client's ``Last-Event-ID``, which is simply the
stream entry id, so a reconnecting client resumes exactly where it stopped.

The stream is a convenience, not the record: the Job row is. Appending never
fails a job (Redis down → the event is skipped, logged), and the SSE view
falls back to the row when the stream is silent or gone.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import redis
from django.conf import settings

from core.redis import redis_client

logger = logging.getLogger(__name__)

# SSE event names.
STATUS = "status"  # the job changed status (started, back to the queue for a retry)
PROGRESS = "progress"  # percent and stage
DONE = "done"  # terminal: the last event of a stream, with the whole job

_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
# After a failed append, skip appends for a moment so a Redis outage costs a
# job one connect timeout, not one per progress point.
_PAUSE_AFTER_FAILURE_S = 5.0
_paused_until = 0.0


def stream_key(job_id: Any) -> str:
    return f"mynah:job-events:{job_id}"


def is_event_id(value: str) -> bool:
    return bool(_EVENT_ID.match(value))


def _client() -> redis.Redis:
    return redis_client(socket_timeout=1.0)


def job_event_append(*, job_id: Any, event: str, data: dict[str, Any]) -> str | None:
    """Append one event; returns its id, or None when Redis is unavailable."""
    global _paused_until
    if time.monotonic() < _paused_until:
        return None
    key = stream_key(job_id)
    try:
        pipe = _client().pipeline(transaction=False)
        pipe.xadd(
            key, {"event": event, "data": json.dumps(data, separators=(",", ":"))}, maxlen=settings.JOB_EVENTS_MAXLEN, approximate=True
        )
        pipe.expire(key, settings.JOB_EVENTS_TTL_S)
        event_id, _ = pipe.execute()
    except redis.RedisError:
        _paused_until = time.monotonic() + _PAUSE_AFTER_FAILURE_S
        logger.warning("could not append a job event; live streams fall back to polling", extra={"job_id": str(job_id)})
        return None
    return event_id.decode() if isinstance(event_id, bytes) else event_id


def decode_entries(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """XREAD/XRANGE entries -> (id, event, data)."""
    decoded = []
    for entry_id, fields in entries:
        decoded.append((entry_id.decode(), fields[b"event"].decode(), json.loads(fields[b"data"])))
    return decoded
