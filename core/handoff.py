"""Handing the rest of a response from a pool thread to the event loop.

config.asgi runs most requests as plain WSGI in a bounded thread pool. A
view that would then wait on a worker (``Prefer: wait``, audio that is still
being made) instead calls :func:`handoff_defer` with a coroutine function and
returns a provisional response. :func:`serve_with_handoff` holds that
provisional response back and, once the view has returned and its thread is
free, runs the coroutine on the event loop: it gets the held response and the
ASGI ``receive``/``send`` and answers the client itself, waiting as long as it
needs without a thread.

Under plain WSGI (Django's test client, a WSGI deployment) nothing serves a
continuation: :func:`handoff_available` is False and the view answers on its
own (without waiting, or waiting in its thread where it must).

Users: voice uploads waiting for their analysis (voices.asgi), ``Prefer:
wait`` (jobs.wait) and OpenAI-compatible speech (jobs.openai_api).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass
class Held:
    """The view's provisional response, not sent: its status, headers (ASGI
    byte pairs, Content-Length included) and whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if bytes(key).lower() == name:
                return bytes(value)
        return None


Continuation = Callable[[Held, Receive, Send], Awaitable[None]]


@dataclass
class _Handoff:
    continuation: Continuation | None = None
    held: list[Message] = field(default_factory=list)


# Set by serve_with_handoff around the WSGI app (the pool thread runs in a
# copy of the request's context, sharing this object): a request cannot set it.
_handoff_var: ContextVar[_Handoff | None] = ContextVar("response_handoff", default=None)


def handoff_available() -> bool:
    """Whether this request is served by the event loop (config.asgi)."""
    return _handoff_var.get() is not None


def handoff_defer(continuation: Continuation) -> bool:
    """Have ``continuation`` answer this request on the event loop once the
    view returns; the view's own response is then only handed to it. False
    (nothing deferred) when no event loop serves the request."""
    handoff = _handoff_var.get()
    if handoff is None:
        return False
    handoff.continuation = continuation
    return True


def response_headers(
    held: Held, *, drop: tuple[bytes, ...] = (), add: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """The held headers without Content-Length (and ``drop``), plus ``add``."""
    skipped = {b"content-length", *drop}
    return [(name, value) for name, value in held.headers if bytes(name).lower() not in skipped] + (add or [])


async def send_whole(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """One complete response with its Content-Length."""
    headers = [(name, value) for name, value in headers if bytes(name).lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_with_handoff(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` (the pooled WSGI app); a response whose view deferred is
    held and given to its continuation, everything else passes through."""
    handoff = _Handoff()

    async def hold_if_deferred(message: Message) -> None:
        # A WSGI view has returned before its response starts: the deferral is settled.
        if handoff.continuation is None:
            await send(message)
        else:
            handoff.held.append(message)

    token = _handoff_var.set(handoff)
    try:
        await app(scope, receive, hold_if_deferred)
    finally:
        _handoff_var.reset(token)
    if handoff.continuation is None or not handoff.held:
        return
    start = handoff.held[0]
    body = b"".join(message.get("body", b"") for message in handoff.held[1:])
    await handoff.continuation(Held(start["status"], list(start["headers"]), body), receive, send)


async def disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (its body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass
