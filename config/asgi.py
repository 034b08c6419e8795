"""ASGI entry point (gunicorn + Uvicorn workers).

Event streams (``/v1/jobs/{id}/events``) go to Django's async handler, where
an open stream is a coroutine waiting on Redis. Every other request runs the
plain WSGI app in a bounded thread pool, one thread hop per request: Django's
async handler runs each sync-style middleware hook in its own hop, which cost
~3.5 ms per request here (healthz 5.2 ms vs 1.9 ms) and a third of the
submission throughput.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile
from typing import Any

from asgiref.wsgi import WsgiToAsgiInstance

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django_asgi = get_asgi_application()
django_wsgi = get_wsgi_application()

_STREAM_PATH = re.compile(r"^/v1/jobs/[^/]+/events/?$")
_executor = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="wsgi")


class _PooledWsgi(WsgiToAsgiInstance):
    """asgiref's WSGI adapter, run in our bounded pool, with the body capped
    while it arrives (before Django sees it)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        loop = asyncio.get_running_loop()
        limit = settings.MAX_REQUEST_BODY_BYTES
        if _declared_length(scope) > limit:
            await _too_large(send, limit)
            return
        with SpooledTemporaryFile(max_size=256 * 1024) as body:
            received = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # client went away
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    await _too_large(send, limit)
                    return
                body.write(chunk)
                if not message.get("more_body"):
                    break
            body.seek(0)
            self.sync_send = lambda event: asyncio.run_coroutine_threadsafe(send(event), loop).result()
            run = WsgiToAsgiInstance.__dict__["run_wsgi_app"].func  # the plain function under @sync_to_async
            context = contextvars.copy_context()
            await loop.run_in_executor(_executor, context.run, run, self, body)


def _declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _too_large(send: Any, limit: int) -> None:
    request_id = uuid.uuid4().hex
    body = json.dumps(
        {"error": {"code": "payload_too_large", "message": f"Request body exceeds {limit} bytes.",
                   "details": {"limit_bytes": limit}, "request_id": request_id}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _executor.shutdown(wait=False, cancel_futures=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http" and _STREAM_PATH.match(scope["path"]):
        await django_asgi(scope, receive, send)
    elif scope["type"] == "http":
        await _PooledWsgi(django_wsgi)(scope, receive, send)
    # websockets: not served
