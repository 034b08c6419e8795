"""Gunicorn settings for the API: Uvicorn workers serving ``config.asgi``.

A long-lived response (the SSE event stream) is a coroutine waiting on
Redis, not a blocked thread, so hundreds of open streams take no capacity
from short requests; those run in a pool of WEB_THREADS threads per process."""

import os

from core.logging import json_logging_config

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# uvicorn's worker with the server's own errors (malformed HTTP, a crash
# before the response) in the API's error shape, and without uvicorn's proxy
# headers: config/asgi.py believes them only from TRUSTED_PROXIES.
worker_class = "config.web_worker.MynahUvicornWorker"
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "0") == "1" else None
# gunicorn's control socket defaults to one fixed path per user, which several
# instances on one host (tests, multi-instance runs) would fight over.
control_socket_disable = True
# gunicorn's and uvicorn's own lines as JSON too (the app's come from Django's LOGGING).
_server_logger = {"handlers": ["console"], "level": "INFO", "propagate": False}
logconfig_dict = json_logging_config(
    loggers=dict.fromkeys(("gunicorn.error", "gunicorn.access", "uvicorn.error", "uvicorn.access"), _server_logger)
)
