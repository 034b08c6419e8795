"""Test settings: the real settings with an in-memory broker and temp storage.

Integration tests that need a real Redis and worker run those as separate
processes with ``config.settings``.
"""

import tempfile
from pathlib import Path

from config.settings import *  # noqa: F403
from config.settings import DATABASES, DRAMATIQ_BROKER, STORAGES

DRAMATIQ_BROKER = {**DRAMATIQ_BROKER, "BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}}
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="mynah-test-media-"))
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="mynah-test-static-"))  # whitenoise wants it to exist
STORAGES = {**STORAGES, "default": {**STORAGES["default"], "OPTIONS": {"location": MEDIA_ROOT}}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ENGINES_PRELOAD = []
VOICE_MODELS_PRELOAD = False
VOICE_ANALYSIS_WAIT_S = 30
JOB_RETRY_MIN_BACKOFF_MS = 10
JOB_RETRY_MAX_BACKOFF_MS = 50
WEBHOOK_RETRY_SCHEDULE_S = [0.05, 0.1, 0.2]
WEBHOOK_SWEEP_GRACE_S = 0.0
WEBHOOK_ALLOWED_NETWORKS = []  # tests that send to loopback receivers allow it explicitly
# A file-based test database (WAL, busy timeout) rather than shared-cache
# in-memory SQLite, whose table locks fail at once: tests that run workers in
# threads then see the same concurrency as production.
DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.mkdtemp(prefix="mynah-test-db-")) / "test.sqlite3")}
# Generous limits; the tests of limits set their own.
TENANT_RATE_LIMIT_PER_MINUTE = 1_000_000
TENANT_KEY_RATE_LIMIT_PER_MINUTE = 1_000_000
AUTH_FAILURE_LIMIT = 1_000_000
# Unit tests see a revoked key or a suspended tenant at once; the tests of
# the cache (tests/tenants/test_auth_cache.py) turn it on.
AUTH_CACHE_TTL_S = 0
# Unit tests see a submission's dispatch when its request returns; the tests
# of the dispatch thread (tests/jobs/test_dispatch_thread.py) and every stack
# started as separate processes (config.settings) use the thread.
JOB_DISPATCH_IN_BACKGROUND = False
