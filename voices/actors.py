"""Thin Dramatiq actors: take string ids, call a service."""

import dramatiq

from voices import routing, services


# Uploads wait on this (the client is holding a request open): run first.
@dramatiq.actor(
    actor_name=routing.VOICE_ANALYZE,
    queue_name=routing.QUEUE,
    priority=0,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=30_000,
    time_limit=120_000,
)
def voice_analyze(voice_id: str) -> None:
    services.voice_analyze(voice_id=voice_id)
