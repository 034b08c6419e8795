"""The one place that builds Redis clients (the Dramatiq broker has its own).

``redis_client()`` returns a client shared by every thread of the process:
redis-py clients are thread-safe (each command borrows a connection from the
client's pool), so one per process is enough and a caller in a loop never
pays a new connection per call. Clients are cached per URL (``REDIS_URL``,
read at each call, so tests can point it elsewhere), timeouts and process id:
a forked child builds its own rather than use its parent's sockets.

Timeouts are short by default: Redis serves rate limits, audit throttling,
event streams and notices, and an outage must cost a request or a job half a
second, not hang it. A caller that blocks on purpose (BLPOP, XREAD BLOCK)
passes a ``socket_timeout`` longer than its block; it gets its own cached
client, so its long waits never hold the short-timeout client's connections.
"""

from __future__ import annotations

import os
import threading

import redis
import redis.asyncio as aioredis
from django.conf import settings

SOCKET_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 0.5

_clients: dict[tuple[int, str, float, float], redis.Redis] = {}
_lock = threading.Lock()


def redis_client(*, socket_timeout: float = SOCKET_TIMEOUT_S, socket_connect_timeout: float = CONNECT_TIMEOUT_S) -> redis.Redis:
    """This process's client for ``settings.REDIS_URL`` with these timeouts."""
    key = (os.getpid(), settings.REDIS_URL, float(socket_timeout), float(socket_connect_timeout))
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            for stale in [other for other in _clients if other[0] != key[0]]:
                del _clients[stale]  # the parent's, before a fork: never used here
            client = _clients[key] = _construct(key[1], socket_timeout=key[2], socket_connect_timeout=key[3])
    return client


def redis_async_client(*, socket_timeout: float, socket_connect_timeout: float = CONNECT_TIMEOUT_S) -> aioredis.Redis:
    """A new asyncio client, which its caller closes (``await client.aclose()``).
    Not cached: an asyncio connection pool belongs to the event loop it was
    used on."""
    return aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout)


def _construct(url: str, *, socket_timeout: float, socket_connect_timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout)


def redis_clients_reset() -> None:
    """Drop the cached clients (tests; after settings change in-process)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
