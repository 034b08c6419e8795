"""Which queue a job goes to, and sending it there.

Lives beside the actors and imports neither them nor the services: services
send through :func:`job_message_send` (by actor name), and ``jobs.actors``
declares its actors with the names and queues defined here. So actors import
services, services import routing, and nothing imports back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.messages import message_send
from jobs.models import Job


@dataclass(frozen=True)
class Route:
    actor_name: str
    queue_name: str
    priority: int  # lower runs first among the messages a worker already holds


TTS = Route("tts_job_run", "tts", 10)
TTS_HIGH = Route("tts_job_run_high", "tts-high", 0)
VIDEO = Route("video_job_run", "video", 10)
VIDEO_HIGH = Route("video_job_run_high", "video-high", 0)
VIDEO_HIRES = Route("video_job_run_hires", "video-hires", 10)
ROUTES = {route.actor_name: route.queue_name for route in (TTS, TTS_HIGH, VIDEO, VIDEO_HIGH, VIDEO_HIRES)}  # actor name -> queue


def job_route(*, kind: str, priority: str, resolution: int | None = None) -> Route:
    """The queue a job goes to. Speech and video have their own queues, so a
    video backlog never delays speech; high priority has its own queue of
    each kind; with VIDEO_HIRES_MIN_RESOLUTION set, large videos go to
    "video-hires" (a pool of bigger machines)."""
    high = priority == Job.Priority.HIGH
    if kind == Job.Kind.TALKING_HEAD:
        threshold = settings.VIDEO_HIRES_MIN_RESOLUTION
        if threshold and (resolution or 0) >= threshold:
            return VIDEO_HIRES
        return VIDEO_HIGH if high else VIDEO
    return TTS_HIGH if high else TTS


def job_message_send(route: Route, job_id: Any) -> None:
    """Enqueue ``job_id`` for the actor of ``route``. Raises whatever the
    broker raises (Redis down): callers decide what that means."""
    message_send(queue_name=route.queue_name, actor_name=route.actor_name, args=(str(job_id),))
