"""Mynah settings: env-driven, with embedded defaults that run locally
(SQLite, local storage, Redis on localhost, built-in engines)."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import dj_database_url

from config.env import env_bool, env_float, env_int, env_list, env_str, persistent_secret
from core.logging import json_logging_config  # plain logging: safe before Django is set up

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MYNAH_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or persistent_secret(VAR_DIR / "secret-key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # admin login brute-force protection
    "rest_framework",
    "rest_framework_api_key",
    "core",  # before django_dramatiq: its rundramatiq (JSON logs in the master too) wins
    "django_dramatiq",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "audit",
    "voices",
    "jobs",
    "webhooks",
]

MIDDLEWARE = [
    "core.middleware.MetricsMiddleware",
    "core.middleware.RequestIdMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
    "core.middleware.BodySizeLimitMiddleware",
    "core.middleware.RateLimitHeadersMiddleware",
    "core.middleware.OperationalEndpointsMiddleware",  # probes and scrapes by pod IP
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    # Last: answers a locked-out admin login (django-axes).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: SQLite by default (WAL + immediate transactions so the web and
# worker processes can write concurrently), Postgres via DATABASE_URL.
# Connections persist: a thread keeps its SQLite connection for
# DB_CONN_MAX_AGE seconds (opening one and its PRAGMAs cost ~7 % of a submit);
# on Postgres a thread keeps its connection too, or, with DB_POOL=true, each
# process keeps a psycopg pool, from which a thread takes a connection per
# request or message (a pool requires CONN_MAX_AGE = 0). The pool is off by
# default: hundreds of event streams opening at once each read a snapshot in
# their own thread, more at once than a pool of DB_POOL_MAX_SIZE lends within
# DB_POOL_TIMEOUT (tests/e2e/test_integration_delivery.py saw 503s).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'mynah.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with write transactions taking turns on a file lock
    # (core/db_backends/sqlite3/base.py: why).
    DATABASES["default"]["ENGINE"] = "core.db_backends.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", False):
    # Per process: DB_POOL_MIN_SIZE connections open at once, up to
    # DB_POOL_MAX_SIZE under load; a thread waits DB_POOL_TIMEOUT seconds for
    # one before the request fails (503 database_unavailable). Size
    # max_connections for (web processes + worker processes) x DB_POOL_MAX_SIZE.
    # With CONN_HEALTH_CHECKS, Django has the pool check a connection before
    # lending it (psycopg_pool.ConnectionPool.check_connection).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 2),
        "max_size": env_int("DB_POOL_MAX_SIZE", 16),
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The admin login (the only password login) counts failures with django-axes.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Presigned result URLs (S3/OSS) stop working after this many seconds.
STORAGE_URL_EXPIRES_S = env_int("STORAGE_URL_EXPIRES_S", 3600)
STORAGE = env_str("STORAGE", "local")
if STORAGE == "s3":
    # AWS S3, Alibaba OSS (S3-compatible endpoint, virtual-hosted addressing),
    # MinIO and SeaweedFS (path addressing) through django-storages + boto3.
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    _MIB = 1024 * 1024
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET"),
            "region_name": env_str("S3_REGION") or None,
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "location": env_str("S3_PREFIX", ""),
            "default_acl": None,  # objects stay private; clients get presigned URLs
            "querystring_auth": True,
            "querystring_expire": STORAGE_URL_EXPIRES_S,
            "file_overwrite": True,  # keys are unique per job attempt: no HEAD before each save
            "client_config": Config(
                s3={"addressing_style": env_str("S3_ADDRESSING_STYLE", "auto")},
                signature_version=env_str("S3_SIGNATURE_VERSION", "s3v4"),
                connect_timeout=env_float("S3_CONNECT_TIMEOUT_S", 5.0),
                read_timeout=env_float("S3_READ_TIMEOUT_S", 60.0),
                retries={"max_attempts": env_int("S3_MAX_ATTEMPTS", 3), "mode": "standard"},
            ),
            # Outputs above the threshold upload in parts (parallel, resumable per part).
            "transfer_config": TransferConfig(
                multipart_threshold=env_int("S3_MULTIPART_THRESHOLD_MB", 16) * _MIB,
                multipart_chunksize=env_int("S3_MULTIPART_CHUNK_MB", 8) * _MIB,
            ),
        },
    }
elif STORAGE != "local":
    raise ValueError(f"STORAGE must be 'local' or 's3', not {STORAGE!r}")

# --- Web: threads per web process for regular (non-streaming) requests.
WEB_THREADS = env_int("WEB_THREADS", 8)

# --- Edge. Peers (CIDRs) whose X-Forwarded-For and X-Forwarded-Proto are
# believed (config/asgi.py): the proxies in front of the web instances.
# Empty (the default): nobody's, clients connect directly (`make run`). The
# local cluster sets loopback; Kubernetes and compose set their networks.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
for _network in TRUSTED_PROXIES:
    try:
        ip_network(_network, strict=False)
    except ValueError:
        raise ValueError(f"TRUSTED_PROXIES: {_network!r} is not an address or CIDR network") from None

# --- Request limits: JSON bodies are small; uploads get their own limits.
# No request body may exceed this (checked while it arrives, before Django).
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 40 * 1024 * 1024)
MAX_JSON_BODY_BYTES = env_int("MAX_JSON_BODY_BYTES", 64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_JSON_BODY_BYTES
TTS_MAX_TEXT_CHARS = env_int("TTS_MAX_TEXT_CHARS", 5000)

# --- Voice prompts. Uploads are analysed in workers (queue "voices"); the
# upload request waits up to VOICE_ANALYSIS_WAIT_S for the verdict.
VOICE_MAX_UPLOAD_BYTES = env_int("VOICE_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
VOICE_MAX_AUDIO_S = env_int("VOICE_MAX_AUDIO_S", 60)  # decoded length, speech and pauses
VOICE_MIN_SPEECH_S = env_float("VOICE_MIN_SPEECH_S", 3.0)
VOICE_MAX_SPEECH_S = env_float("VOICE_MAX_SPEECH_S", 30.0)
VOICE_ANALYSIS_WAIT_S = env_int("VOICE_ANALYSIS_WAIT_S", 20)
# Uploads of one tenant waiting for their verdict at once, over all web
# processes; past it an upload answers at once, still processing (0: never wait).
VOICE_ANALYSIS_WAITING_PER_TENANT = env_int("VOICE_ANALYSIS_WAITING_PER_TENANT", 10)
VOICE_MAX_PER_TENANT = env_int("VOICE_MAX_PER_TENANT", 200)

# --- Talking-head jobs: portrait + speech (uploaded audio, or text -> TTS).
TALKING_HEAD_MAX_IMAGE_BYTES = env_int("TALKING_HEAD_MAX_IMAGE_BYTES", 10 * 1024 * 1024)
TALKING_HEAD_MAX_IMAGE_SIDE = env_int("TALKING_HEAD_MAX_IMAGE_SIDE", 4096)
# 120 s of 48 kHz stereo 16-bit WAV is 23 MB.
TALKING_HEAD_MAX_AUDIO_BYTES = env_int("TALKING_HEAD_MAX_AUDIO_BYTES", 24 * 1024 * 1024)
TALKING_HEAD_MAX_AUDIO_S = env_float("TALKING_HEAD_MAX_AUDIO_S", 120.0)  # decoded length
TALKING_HEAD_DEFAULT_ENGINE = env_str("TALKING_HEAD_DEFAULT_ENGINE", "builtin")
# Route jobs at or above this resolution to the "video-hires" queue (a
# separate worker pool, e.g. bigger GPUs); 0 keeps every video job on "video".
VIDEO_HIRES_MIN_RESOLUTION = env_int("VIDEO_HIRES_MIN_RESOLUTION", 0)

# Multipart upload routes: whole-body limits (file limit + form overhead).
# Files over their own limit get 413 file_too_large from the service.
UPLOAD_FORM_OVERHEAD_BYTES = 256 * 1024
UPLOAD_BODY_LIMITS = {
    "/v1/voices": VOICE_MAX_UPLOAD_BYTES + UPLOAD_FORM_OVERHEAD_BYTES,
    "/v1/talking-head": TALKING_HEAD_MAX_IMAGE_BYTES + TALKING_HEAD_MAX_AUDIO_BYTES + UPLOAD_FORM_OVERHEAD_BYTES,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "core.exception_handler.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["tenants.throttling.TenantRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Mynah API",
    "DESCRIPTION": "Asynchronous speech and talking-head generation. Errors share one shape: "
    '`{"error": {"code", "message", "details", "request_id"}}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from the wheel: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Job.Status",
        "DeliveryStatusEnum": "webhooks.models.Delivery.Status",
        "EventTypeEnum": "webhooks.services.EVENT_TYPES",
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.add_error_responses"],
}

# --- Queueing (Dramatiq on Redis).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "dramatiq.middleware.CurrentMessage",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "jobs.middleware.EngineWarmup",
]
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {
        "url": REDIS_URL,
        # Redelivery of a dead worker's messages needs its heartbeat to time out
        # and a maintenance pass to run; dramatiq's defaults (60 s, 0.1 %) mean
        # ~15 minutes. These make recovery take seconds.
        "heartbeat_timeout": env_int("DRAMATIQ_HEARTBEAT_TIMEOUT_MS", 15_000),
        "maintenance_chance": env_int("DRAMATIQ_MAINTENANCE_CHANCE", 50_000),
    },
    "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
}
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]

# --- Jobs.
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
JOB_RETRY_MIN_BACKOFF_MS = env_int("JOB_RETRY_MIN_BACKOFF_MS", 2_000)
JOB_RETRY_MAX_BACKOFF_MS = env_int("JOB_RETRY_MAX_BACKOFF_MS", 300_000)
JOB_TIME_LIMIT_S = env_int("JOB_TIME_LIMIT_S", 15 * 60)
# repair stops a job still running this long after its time limit (a
# worker stuck where Dramatiq's time limit cannot interrupt it).
JOB_OVERDUE_GRACE_S = env_int("JOB_OVERDUE_GRACE_S", 60)
# Workers refresh a running job's heartbeat every quarter of this; a job silent
# for this long is abandoned (its worker died) and may be claimed again.
JOB_HEARTBEAT_TIMEOUT_S = env_int("JOB_HEARTBEAT_TIMEOUT_S", 30)
# The web process dispatches after submissions in a thread of its own, off the
# request path (jobs.services.dispatch.jobs_dispatch_soon); false: in the request.
JOB_DISPATCH_IN_BACKGROUND = env_bool("JOB_DISPATCH_IN_BACKGROUND", True)
# A web process's submissions share transactions, run by one thread of the
# process and committed together (core.group_commit); false: one transaction each.
DB_GROUP_COMMIT = env_bool("DB_GROUP_COMMIT", True)
# A job still queued this long after its message was sent is sent again (the
# message may have been lost); duplicates are dropped by the claim.
JOB_RESEND_QUEUED_AFTER_S = env_int("JOB_RESEND_QUEUED_AFTER_S", 15 * 60)
# Days results (and the inputs of finished jobs) are kept; tenants may override.
JOB_RESULT_RETENTION_DAYS = env_int("JOB_RESULT_RETENTION_DAYS", 30)
# purge_expired deletes unreferenced objects only once they are this old (an
# upload is stored a moment before the row that references it).
STORAGE_ORPHAN_GRACE_S = env_int("STORAGE_ORPHAN_GRACE_S", 3600)
# Engines to load at worker boot so the first job does not pay the load time.
ENGINES_PRELOAD = env_list("ENGINES_PRELOAD", ["piper", "espeak"])
VOICE_MODELS_PRELOAD = env_bool("VOICE_MODELS_PRELOAD", True)
# Extra engines "name=module:Class,..." (deployments' own adapters, test doubles).
ENGINES_EXTRA = dict(item.split("=", 1) for item in env_list("ENGINES_EXTRA", []))

# The API's public origin, used for result URLs in webhook payloads and event
# streams (built outside a request). API responses use the request's host.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")

# --- Live events (SSE): one capped Redis stream per job.
JOB_EVENTS_MAXLEN = env_int("JOB_EVENTS_MAXLEN", 500)
JOB_EVENTS_TTL_S = env_int("JOB_EVENTS_TTL_S", 24 * 3600)
SSE_KEEPALIVE_S = env_float("SSE_KEEPALIVE_S", 15.0)
SSE_MAX_STREAM_S = env_float("SSE_MAX_STREAM_S", 3600.0)  # then the client reconnects with Last-Event-ID
# Streamed speech (GET /v1/jobs/{id}/audio-stream, jobs/audio_stream.py): a
# worker publishes a job's encoded audio to a Redis stream while a client
# listens; longer speech than AUDIO_STREAM_MAX_BYTES continues from storage.
AUDIO_STREAM_TTL_S = env_int("AUDIO_STREAM_TTL_S", 300)  # the published audio, after its last chunk
AUDIO_STREAM_WANT_TTL_S = env_int("AUDIO_STREAM_WANT_TTL_S", 3600)  # a listener's request, while the job queues
AUDIO_STREAM_MAX_BYTES = env_int("AUDIO_STREAM_MAX_BYTES", 32 * 1024 * 1024)
AUDIO_STREAM_MAX_S = env_float("AUDIO_STREAM_MAX_S", 900.0)  # one response's longest life
AUDIO_STREAM_POLL_S = env_float("AUDIO_STREAM_POLL_S", 1.0)  # quiet (or Redis down): look at the row this often

# --- Speech now (jobs/wait.py, jobs/openai_api.py): waits on the event loop, never in a web thread.
# ``Prefer: wait=N`` on POST /v1/tts and /v1/talking-head waits at most this long (RFC 7240); at most 60.
JOB_WAIT_MAX_S = min(env_float("JOB_WAIT_MAX_S", 60.0), 60.0)
# POST /v1/audio/speech: OpenAI's model names -> our engines ("name=engine,..."); engine names are accepted as they are.
OPENAI_SPEECH_MODELS = dict(
    item.split("=", 1)
    for item in env_list(
        "OPENAI_SPEECH_MODELS", ["tts-1=piper", "tts-1-hd=piper", "gpt-4o-mini-tts=piper", "gpt-4o-mini-tts-2025-12-15=piper"]
    )
)

# --- Webhooks (Standard Webhooks signatures).
# Delays between attempts after a 5xx, timeout or connection error (seconds);
# the defaults add up to just under 24 h. 4xx (but 408/429) are permanent.
WEBHOOK_RETRY_SCHEDULE_S = [
    float(value)
    for value in env_list("WEBHOOK_RETRY_SCHEDULE_S", ["5", "30", "120", "600", "1800", "3600", "7200", "14400", "28800", "28800"])
]
WEBHOOK_RETRY_WINDOW_S = env_float("WEBHOOK_RETRY_WINDOW_S", 24 * 3600.0)
WEBHOOK_CONNECT_TIMEOUT_S = env_float("WEBHOOK_CONNECT_TIMEOUT_S", 5.0)
WEBHOOK_READ_TIMEOUT_S = env_float("WEBHOOK_READ_TIMEOUT_S", 10.0)
# Retries due sooner than this wait in the broker; later ones are sent by the sweeper.
WEBHOOK_BROKER_DELAY_MAX_S = env_float("WEBHOOK_BROKER_DELAY_MAX_S", 600.0)
WEBHOOK_SWEEP_GRACE_S = env_float("WEBHOOK_SWEEP_GRACE_S", 30.0)
# An endpoint whose deliveries failed this many times in a row is disabled.
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 10)
WEBHOOK_PROGRESS_INTERVAL_S = env_float("WEBHOOK_PROGRESS_INTERVAL_S", 5.0)
# Finished deliveries (and their attempts) are kept this long for replay and support.
WEBHOOK_DELIVERY_RETENTION_DAYS = env_int("WEBHOOK_DELIVERY_RETENTION_DAYS", 30)
WEBHOOK_SECRET_ROTATION_GRACE_S = env_int("WEBHOOK_SECRET_ROTATION_GRACE_S", 24 * 3600)
# CIDRs webhooks may reach although private (e.g. "10.0.0.0/8" for an
# internal receiver; tests and local dev: "127.0.0.0/8,::1/128").
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS", [])

# --- Tenant limits (defaults; each tenant may override them in the admin).
TENANT_RATE_LIMIT_PER_MINUTE = env_int("TENANT_RATE_LIMIT_PER_MINUTE", 1200)
TENANT_KEY_RATE_LIMIT_PER_MINUTE = env_int("TENANT_KEY_RATE_LIMIT_PER_MINUTE", 600)
TENANT_MAX_ACTIVE_JOBS = env_int("TENANT_MAX_ACTIVE_JOBS", 1000)
TENANT_MONTHLY_SECONDS_QUOTA = env_int("TENANT_MONTHLY_SECONDS_QUOTA", 0)  # 0: unlimited
# Fair share: jobs of one tenant handed to the broker at once; the rest wait
# in the database and are released as these finish, so one tenant's burst
# queues in front of others by at most this many jobs.
TENANT_MAX_IN_FLIGHT = env_int("TENANT_MAX_IN_FLIGHT", 8)
# ... and by size: per kind of job (speech, talking head), at most this much
# estimated work in flight, in seconds of speech; a talking-head second counts
# TALKING_HEAD_COST_PER_SECOND. A job larger than the budget runs alone.
TENANT_MAX_IN_FLIGHT_COST = env_int("TENANT_MAX_IN_FLIGHT_COST", 600)
TALKING_HEAD_COST_PER_SECOND = env_float("TALKING_HEAD_COST_PER_SECOND", 10.0)
# Seconds of audio (or video) one job may make: an estimate over it is refused
# at submit (422 job_too_large), and the worker stops a job whose output passes it.
TENANT_MAX_JOB_DURATION_S = env_int("TENANT_MAX_JOB_DURATION_S", 1800)
# Webhook endpoints per tenant (409 too_many_webhook_endpoints past it).
TENANT_MAX_WEBHOOK_ENDPOINTS = env_int("TENANT_MAX_WEBHOOK_ENDPOINTS", 20)
# Fair share of the webhook workers: deliveries of one tenant handed to the
# broker or being sent at once; the rest wait in the database. Keep it below
# the webhook workers' threads, so a tenant's slow receivers leave threads to others.
TENANT_MAX_WEBHOOKS_IN_FLIGHT = env_int("TENANT_MAX_WEBHOOKS_IN_FLIGHT", 4)

# Failed authentications are audited at most once per client address and key prefix per interval.
AUDIT_AUTH_FAILURE_INTERVAL_S = env_int("AUDIT_AUTH_FAILURE_INTERVAL_S", 60)
# Failed API authentications per client address: this many at once, then this
# many per window; past that the address gets 429 rate_limited (Retry-After)
# on every request carrying a key. 0 disables the limit.
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 20)
AUTH_FAILURE_WINDOW_S = env_int("AUTH_FAILURE_WINDOW_S", 60)

# --- Admin login (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT failures from
# one address, or for one username, further attempts get 429 for
# ADMIN_LOGIN_COOLOFF_S (each failure while locked restarts it); lockouts are
# audited (admin.login_locked_out). Staff see attempts in the admin (Axes)
# and lift a lockout there or with `manage.py axes_reset`.
ADMIN_LOGIN_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
ADMIN_LOGIN_COOLOFF_S = env_int("ADMIN_LOGIN_COOLOFF_S", 15 * 60)
AXES_FAILURE_LIMIT = ADMIN_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=ADMIN_LOGIN_COOLOFF_S)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one locks
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.context.client_ip"  # REMOTE_ADDR, after TRUSTED_PROXIES
AXES_LOCKOUT_CALLABLE = "tenants.admin_login.lockout_response"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_VERBOSE = False  # no banner in every manage.py command; failures are still logged

# Dedup reuses a finished output only if it is kept at least this much longer.
DEDUP_MIN_RESULT_LIFETIME_S = env_int("DEDUP_MIN_RESULT_LIFETIME_S", 24 * 3600)

# A POST repeated with the same Idempotency-Key within this window replays its first response.
IDEMPOTENCY_KEY_TTL_S = env_int("IDEMPOTENCY_KEY_TTL_S", 24 * 3600)
# A duplicate waits this long for the first request's response (then 409).
IDEMPOTENCY_WAIT_S = env_float("IDEMPOTENCY_WAIT_S", 10.0)
# A claim this old without a response belongs to a request that died.
IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S = env_int("IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S", 60)

API_KEY_CUSTOM_HEADER = None
API_KEY_LAST_USED_RESOLUTION_S = env_float("API_KEY_LAST_USED_RESOLUTION_S", 60.0)
# Each process keeps keys it verified for AUTH_CACHE_TTL_S seconds (0: off),
# so a request skips the key lookup. That is the bound on revocation: a key
# revoked or a tenant suspended elsewhere is refused by every process within
# it (tenants/auth_cache.py). At most AUTH_CACHE_MAX_ENTRIES keys per process.
AUTH_CACHE_TTL_S = env_float("AUTH_CACHE_TTL_S", 2.0)
AUTH_CACHE_MAX_ENTRIES = env_int("AUTH_CACHE_MAX_ENTRIES", 4096)

# --- /metrics (Prometheus). Set a token to require "Authorization: Bearer
# <token>" (scrapers send it with bearer_token / authorization in their config).
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Logging: JSON lines with request and job ids.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = json_logging_config(LOG_LEVEL, loggers={"django.db.backends": {"level": "INFO"}})

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
