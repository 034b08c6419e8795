"""A small per-process cache of verified API keys, so an authenticated request
skips the key lookup (a query by prefix, a SHA-512 check and the tenant).

Bound on revocation: an entry lives ``AUTH_CACHE_TTL_S`` seconds (default
2) from the start of the lookup that verified it, and only successful
lookups are cached. A key revoked, or a tenant suspended, in another process (another web
instance, a management command, a SQL UPDATE) is therefore refused by every
process at most ``AUTH_CACHE_TTL_S`` seconds after the change commits. In the
process that makes the change (``api_key_revoke``, the admin) the cache is
cleared at once, and again when the change commits. Expiry (``expiry_date``)
is checked on every request, cached or not. ``AUTH_CACHE_TTL_S = 0`` turns
the cache off.

Entries are keyed by a keyed BLAKE2b digest of the raw key (the salt is
random per process): the raw key is never stored, and never logged. The
cache is an LRU of at most ``AUTH_CACHE_MAX_ENTRIES`` entries, safe to use
from the web process's threads."""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from tenants.models import ApiKey


@dataclass(frozen=True)
class Ticket:
    """Taken before a lookup: the cache's generation and clock then."""

    generation: int
    started_at: float


@dataclass
class _Entry:
    api_key: ApiKey  # with its tenant loaded; never handed out itself (see get())
    expires_at: float  # on the cache's clock


class ApiKeyCache:
    """Verified ``ApiKey`` (and tenant) by digest of the raw key, for a TTL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # injectable: tests move time without sleeping
        self._salt = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0  # bumped by clear(): a lookup that began before it is not cached (see put())

    @staticmethod
    def ttl_s() -> float:
        return float(settings.AUTH_CACHE_TTL_S)

    def digest(self, raw_key: str) -> bytes:
        return hashlib.blake2b(raw_key.encode(), key=self._salt, digest_size=32).digest()

    def get(self, digest: bytes) -> ApiKey | None:
        """A private copy of the cached key (and of its tenant), or None. The
        copy keeps one request's changes (``last_used_at``) from other threads."""
        if self.ttl_s() <= 0:
            return None
        now = self.clock()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry.expires_at <= now:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            cached = entry.api_key
        return _copy(cached)

    def ticket(self) -> Ticket:
        with self._lock:
            return Ticket(generation=self.generation, started_at=self.clock())

    def put(self, digest: bytes, api_key: ApiKey, *, ticket: Ticket) -> None:
        """Cache a key verified by a lookup that began with ``ticket``. The
        entry expires AUTH_CACHE_TTL_S after the lookup began (the row may
        have been read then), and is dropped if the cache was cleared since:
        the lookup may have read the row before a revocation."""
        ttl = self.ttl_s()
        if ttl <= 0:
            return
        entry = _Entry(api_key=_copy(api_key), expires_at=ticket.started_at + ttl)
        with self._lock:
            if ticket.generation != self.generation:
                return
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > max(1, settings.AUTH_CACHE_MAX_ENTRIES):
                self._entries.popitem(last=False)

    def touched(self, digest: bytes, api_key: ApiKey) -> None:
        """Note a new ``last_used_at`` in the cached entry, so the next
        requests do not write it again within the resolution window."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None and entry.api_key.pk == api_key.pk:
                entry.api_key.last_used_at = api_key.last_used_at

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _copy(api_key: ApiKey) -> ApiKey:
    clone = copy.copy(api_key)  # Model.__reduce__: its own _state and fields cache
    clone.tenant = copy.copy(api_key.tenant)
    return clone


api_key_cache = ApiKeyCache()


def api_key_cache_clear() -> None:
    """Forget every cached key of this process, now and when the current
    transaction commits (a lookup between the two would cache the old row).
    Other processes see the change within ``AUTH_CACHE_TTL_S``."""
    api_key_cache.clear()
    transaction.on_commit(api_key_cache.clear)
