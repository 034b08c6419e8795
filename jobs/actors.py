"""Thin Dramatiq actors: take string ids, call a service."""

from typing import Any

import dramatiq
from django.conf import settings

from jobs import services

_JOB_ACTOR_OPTIONS: dict[str, Any] = {
    # Attempts are counted on the Job row (services decide retry vs fail);
    # this bounds redeliveries, including ones after database errors.
    "max_retries": settings.JOB_MAX_ATTEMPTS + 2,
    "min_backoff": settings.JOB_RETRY_MIN_BACKOFF_MS,
    "max_backoff": settings.JOB_RETRY_MAX_BACKOFF_MS,
    "time_limit": settings.JOB_TIME_LIMIT_S * 1000,
}


# Lower priority values run first among the messages a worker already holds.
@dramatiq.actor(queue_name="tts", priority=10, **_JOB_ACTOR_OPTIONS)
def tts_job_run(job_id: str) -> None:
    services.job_run(job_id=job_id)


@dramatiq.actor(queue_name="tts-high", priority=0, **_JOB_ACTOR_OPTIONS)
def tts_job_run_high(job_id: str) -> None:
    """High priority: its own queue (Redis has no per-message priority), so it
    never waits behind a normal backlog; workers take it first."""
    services.job_run(job_id=job_id)


# Talking-head jobs: their own queues, so a video backlog never delays speech.
@dramatiq.actor(queue_name="video", priority=10, **_JOB_ACTOR_OPTIONS)
def video_job_run(job_id: str) -> None:
    services.job_run(job_id=job_id)


@dramatiq.actor(queue_name="video-high", priority=0, **_JOB_ACTOR_OPTIONS)
def video_job_run_high(job_id: str) -> None:
    services.job_run(job_id=job_id)


@dramatiq.actor(queue_name="video-hires", priority=10, **_JOB_ACTOR_OPTIONS)
def video_job_run_hires(job_id: str) -> None:
    """Resolutions at or above VIDEO_HIRES_MIN_RESOLUTION, for a separate pool."""
    services.job_run(job_id=job_id)
