"""``POST /v1/voices`` on the ASGI server: the wait for the analysis runs on
the event loop, not in a web thread.

config.asgi hands the request here with its usual WSGI runner. The view runs
in the pool as always (authentication, rate limit, validation, storing the
upload, queueing its analysis, the Idempotency-Key record) and, instead of
waiting, registers the voice in a :class:`~voices.waiting.Deferral` that only
this module can provide. Its ``processing`` answer is held back while this
coroutine takes one of the tenant's waiting slots and blocks on the worker's
Redis notice (until ``VOICE_ANALYSIS_WAIT_S``, or the client goes away); then
one short pool call reads the verdict and the client gets what the WSGI path
would have answered: the analysed voice (201), the rejection (422, the voice
removed) or, past the wait, the voice still ``processing`` (201). Over the
tenant's cap, the held answer goes out at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from rest_framework.renderers import JSONRenderer

from voices import services, waiting

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Any, Any], Awaitable[None]]

logger = logging.getLogger(__name__)

_UPLOAD_PATH = re.compile(r"^/v1/voices/?$")


def is_voice_upload(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and _UPLOAD_PATH.match(scope["path"]) is not None


async def voice_upload(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` (the pooled WSGI app) for an upload, then wait on the loop."""
    deferral = waiting.Deferral()
    held: list[Message] = []

    async def hold_if_deferred(message: Message) -> None:
        # The view has returned before its response starts: the deferral is settled.
        if deferral.pending is None:
            await send(message)
        else:
            held.append(message)

    token = waiting.deferral_var.set(deferral)
    try:
        await app(scope, receive, hold_if_deferred)
    finally:
        waiting.deferral_var.reset(token)
    if not held or deferral.pending is None:
        return
    start, body = held[0], b"".join(message.get("body", b"") for message in held[1:])
    if start["status"] == 201:  # the view's processing answer (anything else passes as it is)
        waited = await _wait(deferral.pending, receive)
        if waited is None:
            return  # the client went away: nobody to answer
        if waited:
            try:
                start, body = await _settle(deferral.pending, scope, start)
            except Exception:  # e.g. the database went away: the held answer is still true
                logger.warning("could not read a voice's verdict after its wait; answering processing", exc_info=True)
    await _respond(send, start, body)


async def _wait(pending: waiting.Pending, receive: Receive) -> bool | None:
    """Wait in one of the tenant's slots: True if it waited, False if over
    the cap (or Redis is down), None if the client left meanwhile."""
    client = waiting.notice_client_async(pending.deadline - time.monotonic())
    try:
        slot = await waiting.slot_take_async(client, tenant_id=pending.tenant_id, hold_s=pending.deadline - time.monotonic())
        if slot is None:
            return False
        try:
            notice = asyncio.ensure_future(waiting.notice_wait_async(client, voice_id=pending.voice_id, deadline=pending.deadline))
            disconnect = asyncio.ensure_future(_disconnected(receive))
            try:
                done, _ = await asyncio.wait({notice, disconnect}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (notice, disconnect):
                    task.cancel()
                await asyncio.gather(notice, disconnect, return_exceptions=True)
            return None if notice not in done else True
        finally:
            await waiting.slot_release_async(client, slot)
    finally:
        await client.aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _settle(pending: waiting.Pending, scope: Scope, start: Message) -> tuple[Message, bytes]:
    """The verdict, read in one short pool call, as the response to send."""
    request_id = dict(start["headers"]).get(b"x-request-id", b"").decode("latin-1")
    status, body = await sync_to_async(services.voice_upload_settle, thread_sensitive=False)(
        voice_id=pending.voice_id,
        tenant_id=pending.tenant_id,
        idempotency_key=_request_header(scope, b"idempotency-key"),
        request_id=request_id,
    )
    headers = start["headers"] if status < 400 else [(name, value) for name, value in start["headers"] if name.lower() != b"location"]
    return {**start, "status": status, "headers": headers}, JSONRenderer().render(body)


def _request_header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(send: Send, start: Message, body: bytes) -> None:
    headers = [(name, value) for name, value in start["headers"] if bytes(name).lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": start["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body})
