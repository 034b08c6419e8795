"""Thin Dramatiq actors: take string ids, call a service.

Names, queues and priorities come from ``jobs.routing``, which the services
use to send; this module is imported by workers only."""

from typing import Any

import dramatiq
from django.conf import settings

from jobs import routing, services

_JOB_ACTOR_OPTIONS: dict[str, Any] = {
    # Attempts are counted on the Job row (services decide retry vs fail);
    # this bounds redeliveries, including ones after database errors.
    "max_retries": settings.JOB_MAX_ATTEMPTS + 2,
    "min_backoff": settings.JOB_RETRY_MIN_BACKOFF_MS,
    "max_backoff": settings.JOB_RETRY_MAX_BACKOFF_MS,
    "time_limit": settings.JOB_TIME_LIMIT_S * 1000,
}


def _job_actor(route: routing.Route) -> Any:
    def run(job_id: str) -> None:
        services.job_run(job_id=job_id)

    run.__name__ = run.__qualname__ = route.actor_name
    declare = dramatiq.actor(actor_name=route.actor_name, queue_name=route.queue_name, priority=route.priority, **_JOB_ACTOR_OPTIONS)
    return declare(run)


# High priority has its own queues (Redis has no per-message priority), so it
# never waits behind a normal backlog; talking heads have their own queues, so
# a video backlog never delays speech; "video-hires" is for a bigger pool.
tts_job_run = _job_actor(routing.TTS)
tts_job_run_high = _job_actor(routing.TTS_HIGH)
video_job_run = _job_actor(routing.VIDEO)
video_job_run_high = _job_actor(routing.VIDEO_HIGH)
video_job_run_hires = _job_actor(routing.VIDEO_HIRES)
