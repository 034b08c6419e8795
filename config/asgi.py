"""ASGI entry point (gunicorn + Uvicorn workers).

Event streams (``/v1/jobs/{id}/events``) and streamed audio
(``/v1/jobs/{id}/audio-stream``) go to Django's async handler, where an open
stream is a coroutine waiting on Redis. Every other request runs the
plain WSGI app in a bounded thread pool, one thread hop per request: Django's
async handler runs each sync-style middleware hook in its own hop, which cost
~3.5 ms per request here (healthz 5.2 ms vs 1.9 ms) and a third of the
submission throughput.

Before either, the router believes X-Forwarded-For and X-Forwarded-Proto only
from TRUSTED_PROXIES (and drops them from anyone else), and caps every body
while it arrives, chunked bodies included, which it then hands to Django
with their length.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from tempfile import SpooledTemporaryFile
from typing import Any

from asgiref.wsgi import WsgiToAsgiInstance

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

from core.handoff import serve_with_handoff
from core.middleware import request_body_limit
from core.responses import raw_error_response

django_asgi = get_asgi_application()
django_wsgi = get_wsgi_application()

logger = logging.getLogger(__name__)

# Event streams and streamed audio: long responses that wait on Redis.
_STREAM_PATH = re.compile(r"^/v1/jobs/[^/]+/(events|audio-stream)/?$")
# A response up to this size is sent whole by the loop (see _PooledWsgi._run).
RESPONSE_HOLD_BYTES = 256 * 1024
_executor = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="wsgi")


class _PooledWsgi(WsgiToAsgiInstance):
    """asgiref's WSGI adapter, run in our bounded pool, with the body capped
    while it arrives (before Django sees it)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        loop = asyncio.get_running_loop()
        limit, code, message = _body_limit(scope["path"])
        if _declared_length(scope) > limit:
            await _error(send, 413, code, message, {"limit_bytes": limit})
            return
        with SpooledTemporaryFile(max_size=256 * 1024) as body:
            received = 0
            while True:
                event = await receive()
                if event["type"] != "http.request":
                    return  # client went away
                chunk = event.get("body", b"")
                received += len(chunk)
                if received > limit:  # a chunked body, or one longer than declared
                    await _error(send, 413, code, message, {"limit_bytes": limit})
                    return
                body.write(chunk)
                if not event.get("more_body"):
                    break
            body.seek(0)
            # (asgiref types sync_send as its AsyncToSync wrapper; any callable does.)
            self.sync_send = lambda event: asyncio.run_coroutine_threadsafe(send(event), loop).result()  # type: ignore[assignment]
            context = contextvars.copy_context()
            held = await loop.run_in_executor(_executor, context.run, self._run, body, received)
            for event in held:
                await send(event)

    def _run(self, body: Any, length: int) -> list[dict[str, Any]]:
        """asgiref's run_wsgi_app, plus the WSGI-mandated ``close()`` of the
        response: that is what fires ``request_finished`` (closing database
        connections) and closes FileResponse handles.

        A response up to RESPONSE_HOLD_BYTES (every API answer but downloads)
        is returned whole, for the loop to send after this thread is done: each
        message sent from this thread is a round trip to the loop that wakes
        this thread again (three per response, profiled at a fifth of the
        loop's time). A longer one streams from here as it is produced."""
        try:
            environ = self.build_environ(self.scope, body)
        except ValueError as exc:  # too many duplicate headers
            headers, content = raw_error_response(
                400, "malformed_request", "The request has too many duplicate headers.", {"reason": str(exc)}
            )
            return [{"type": "http.response.start", "status": 400, "headers": headers}, {"type": "http.response.body", "body": content}]
        # A chunked body has no Content-Length, and WSGI (Django) reads none
        # without one: it was read whole above, so give it its length.
        environ["CONTENT_LENGTH"] = str(length)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        response = self.wsgi_application(environ, self.start_response)
        chunks: list[bytes] | None = []  # None once streaming
        held = 0
        try:
            sent = 0
            for output in response:
                if self.response_content_length is not None:
                    output = output[: self.response_content_length - sent]
                sent += len(output)
                if chunks is not None and held + len(output) <= RESPONSE_HOLD_BYTES:
                    chunks.append(output)
                    held += len(output)
                else:
                    self._stream(chunks, output)
                    chunks = None
                if sent == self.response_content_length:
                    break
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()
        if chunks is None:
            self.sync_send({"type": "http.response.body"})
            return []
        self.response_started = True
        return [self.response_start, {"type": "http.response.body", "body": b"".join(chunks)}]

    def _stream(self, held: list[bytes] | None, output: bytes) -> None:
        """Send from this thread: the start and what was held first, once."""
        if held is not None:
            self.response_started = True
            self.sync_send(self.response_start)
            if held:
                self.sync_send({"type": "http.response.body", "body": b"".join(held), "more_body": True})
        self.sync_send({"type": "http.response.body", "body": output, "more_body": True})


def _is_stream_request(scope: dict[str, Any]) -> bool:
    """A bodiless GET of an event stream: only those reach Django's async
    handler, which would read any body (of any size) before the view runs."""
    if scope["method"] != "GET" or not _STREAM_PATH.match(scope["path"]):
        return False
    headers = dict(scope.get("headers", []))
    return headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers


def _declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _body_limit(path: str) -> tuple[int, str, str]:
    """The path's limit (core.middleware.request_body_limit), never above
    MAX_REQUEST_BODY_BYTES."""
    limit, code, message = request_body_limit(path)
    ceiling = settings.MAX_REQUEST_BODY_BYTES
    if limit > ceiling:
        return ceiling, "payload_too_large", f"Request body exceeds {ceiling} bytes."
    return limit, code, message


async def _error(send: Any, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
    """The API's error shape, answered before Django (and before the body is read)."""
    headers, body = raw_error_response(status, code, message, details)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- Forwarded headers: believed from TRUSTED_PROXIES only.
_FORWARDED = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-prefix", b"x-real-ip"}
)


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(cidr, strict=False) for cidr in cidrs)


def _is_trusted(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _forwarded_address(entry: str) -> str | None:
    """One X-Forwarded-For entry as a plain address ("1.2.3.4", "1.2.3.4:80",
    "2001:db8::1", "[2001:db8::1]:80"), or None when it is not one."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1 : entry.find("]")] if "]" in entry else ""
    elif entry.count(":") == 1:
        entry = entry.split(":", 1)[0]
    try:
        return str(ip_address(entry))
    except ValueError:
        return None


def apply_forwarded_headers(scope: dict[str, Any]) -> None:
    """From a trusted proxy: the client is the right-most X-Forwarded-For
    address that is not itself a trusted proxy, and the scheme is
    X-Forwarded-Proto (http or https). From anyone else these headers are
    removed, so no code can believe them by mistake. Changes the scope in
    place, as uvicorn's own proxy middleware does (its access log shows the
    client)."""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    headers = scope.get("headers", [])
    peer = scope.get("client")
    if not networks or peer is None or not _is_trusted(peer[0], networks):
        if any(name in _FORWARDED for name, _ in headers):
            scope["headers"] = [(name, value) for name, value in headers if name not in _FORWARDED]
        return
    chain: list[str] = []
    proto = ""
    for name, value in headers:
        if name == b"x-forwarded-for":
            chain += value.decode("latin-1").split(",")
        elif name == b"x-forwarded-proto":
            proto = value.decode("latin-1").split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        scope["scheme"] = proto
    client: str | None = None
    for entry in reversed(chain):
        address = _forwarded_address(entry)
        if address is None:
            break  # garbage: keep the last hop that made sense
        client = address
        if not _is_trusted(address, networks):
            break
    if client is not None:
        scope["client"] = (client, 0)


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
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    # websockets: not served


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Dispatch, and a crash of this router before any response (Django
    answers its own) as a JSON 500 rather than the server's plain text."""
    started = False

    async def tracking_send(event: dict[str, Any]) -> None:
        nonlocal started
        started = started or event["type"] == "http.response.start"
        await send(event)

    try:
        apply_forwarded_headers(scope)
        await _dispatch(scope, receive, tracking_send)
    except Exception:
        if started:
            raise
        logger.exception("unhandled error in the ASGI router")
        await _error(send, 500, "internal_error", "An internal error occurred; it has been logged.")


async def _dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if _is_stream_request(scope):
        await django_asgi(scope, receive, send)
    elif scope["method"] == "GET" and _STREAM_PATH.match(scope["path"]):
        # A stream request with a body would hold a pool thread for the stream's life.
        await _error(send, 400, "malformed_request", "A stream request must not have a body.")
    else:  # a view may hand the rest of its response to the loop (core.handoff: voice uploads, Prefer: wait, speech)
        await serve_with_handoff(_PooledWsgi(django_wsgi), scope, receive, send)
