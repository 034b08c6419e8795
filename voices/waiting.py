"""Waiting for a voice's analysis without holding a web thread.

An upload answers with the analysed voice when the worker's verdict comes
within ``VOICE_ANALYSIS_WAIT_S``. Served by ``config.asgi`` (gunicorn +
Uvicorn), the upload's view only stores the file and queues the analysis in a
pool thread; the wait then happens on the event loop (``voices.asgi``), as a
coroutine blocked on the worker's Redis notice, so a flood of waiting uploads
takes no thread from other requests. Under plain WSGI (the test client) the
view waits in its thread as before.

Waiting is capped per tenant (``VOICE_ANALYSIS_WAITING_PER_TENANT``) across
every web process: a slot is a member of a Redis sorted set scored by its
expiry, taken and counted in one script on Redis's clock, so a process that
dies mid-wait leaks its slot only until the expiry. Over the cap, or with
Redis unavailable, the upload answers at once with the voice ``processing``
(201): the upload is stored and analysed either way, and the client polls.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from uuid import UUID

import redis
import redis.asyncio as aioredis
from django.conf import settings

from core.redis import redis_async_client, redis_client

logger = logging.getLogger(__name__)

# BLPOP blocks at most this long at a time; the waiting client's socket
# timeout is longer, so a quiet wait is never mistaken for a dead Redis.
NOTICE_BLOCK_MAX_S = 30
# A slot outlives its wait by this much before another request may take it
# over (only matters when the process holding it died without releasing it).
_SLOT_GRACE_S = 30

# KEYS[1]: the tenant's slots. ARGV: cap, hold in ms, member. 1 if taken.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local expires = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def notice_key(voice_id: object) -> str:
    """The list the worker pushes to when a voice's verdict is recorded."""
    return f"mynah:voice-analyzed:{voice_id}"


def slots_key(tenant_id: object) -> str:
    return f"mynah:voice-waiting:{tenant_id}"


@dataclass(frozen=True)
class Slot:
    key: str
    member: str


def _take_args(tenant_id: UUID, hold_s: float) -> tuple[list[str], list[str | int]] | None:
    cap = settings.VOICE_ANALYSIS_WAITING_PER_TENANT
    if cap <= 0 or hold_s <= 0:
        return None
    return [slots_key(tenant_id)], [cap, int((hold_s + _SLOT_GRACE_S) * 1000), uuid.uuid4().hex]


def slot_take(*, tenant_id: UUID, hold_s: float) -> Slot | None:
    """A waiting slot of the tenant, or None: over the cap, or Redis down."""
    take = _take_args(tenant_id, hold_s)
    if take is None:
        return None
    keys, args = take
    try:
        taken = redis_client().eval(_TAKE, 1, *keys, *args)
    except redis.RedisError:
        logger.warning("voice waiting slots unavailable; answering without waiting")
        return None
    return Slot(keys[0], str(args[2])) if taken else None


def slot_release(slot: Slot) -> None:
    try:
        redis_client().zrem(slot.key, slot.member)
    except redis.RedisError:  # it expires on its own
        logger.warning("could not release a voice waiting slot", exc_info=True)


async def slot_take_async(client: aioredis.Redis, *, tenant_id: UUID, hold_s: float) -> Slot | None:
    take = _take_args(tenant_id, hold_s)
    if take is None:
        return None
    keys, args = take
    try:
        taken = await client.eval(_TAKE, 1, *keys, *args)
    except (aioredis.RedisError, OSError):
        logger.warning("voice waiting slots unavailable; answering without waiting")
        return None
    return Slot(keys[0], str(args[2])) if taken else None


async def slot_release_async(client: aioredis.Redis, slot: Slot) -> None:
    try:
        await client.zrem(slot.key, slot.member)
    except (aioredis.RedisError, OSError):
        logger.warning("could not release a voice waiting slot", exc_info=True)


def notice_client_async(timeout_s: float) -> aioredis.Redis:
    """A new asyncio client for one wait (its caller closes it)."""
    return redis_async_client(socket_timeout=max(0.0, min(timeout_s, NOTICE_BLOCK_MAX_S)) + 5, socket_connect_timeout=1.0)


async def notice_wait_async(client: aioredis.Redis, *, voice_id: UUID, deadline: float) -> None:
    """Until the worker's notice for the voice, or ``deadline`` (``time.monotonic()``),
    or Redis fails (the caller then reads the row once and answers)."""
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            block_s = max(0.1, min(remaining, NOTICE_BLOCK_MAX_S))
            if await client.blpop([notice_key(voice_id)], timeout=round(block_s, 1)):
                return
    except (aioredis.RedisError, OSError):
        logger.warning("voice analysis notice unavailable; answering with the voice as it is", exc_info=True)


# ------------------------------------------------------- view <-> ASGI side


@dataclass(frozen=True)
class Pending:
    """An upload whose wait the event loop does (voices.asgi)."""

    voice_id: UUID
    tenant_id: UUID
    deadline: float  # time.monotonic()
