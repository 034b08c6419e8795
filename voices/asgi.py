"""``POST /v1/voices`` on the ASGI server: the wait for the analysis runs on
the event loop, not in a web thread.

The view runs in the pool as always (authentication, rate limit, validation,
storing the upload, queueing its analysis, the Idempotency-Key record) and,
instead of waiting, hands its ``processing`` answer to :func:`upload_answer`
through core.handoff (:func:`wait_defer`). That coroutine takes one of
the tenant's waiting slots and blocks on the worker's Redis notice (until
``VOICE_ANALYSIS_WAIT_S``, or the client goes away); then one short pool call
reads the verdict and the client gets what the WSGI path would have
answered: the analysed voice (201), the rejection (422, the voice removed)
or, past the wait, the voice still ``processing`` (201). Over the tenant's
cap, the held answer goes out at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from uuid import UUID

from django.conf import settings
from rest_framework.renderers import JSONRenderer

from core.aio import in_thread
from core.handoff import Held, Receive, Send, disconnected, handoff_defer, send_whole
from voices import services, waiting

logger = logging.getLogger(__name__)


def wait_defer(*, voice_id: UUID, tenant_id: UUID, idempotency_key: str | None) -> bool:
    """Hand the wait for this voice to the event loop (core.handoff), if this
    request is served by it. False under plain WSGI: the caller waits itself."""
    pending = waiting.Pending(voice_id=voice_id, tenant_id=tenant_id, deadline=time.monotonic() + settings.VOICE_ANALYSIS_WAIT_S)
    return handoff_defer(functools.partial(upload_answer, pending=pending, idempotency_key=idempotency_key))


async def upload_answer(held: Held, receive: Receive, send: Send, *, pending: waiting.Pending, idempotency_key: str | None) -> None:
    """The upload's answer after its wait (core.handoff continuation)."""
    status, headers, body = held.status, held.headers, held.body
    if status == 201:  # the view's processing answer (anything else passes as it is)
        waited = await _wait(pending, receive)
        if waited is None:
            return  # the client went away: nobody to answer
        if waited:
            try:
                status, headers, body = await _settle(pending, held, idempotency_key)
            except Exception:  # e.g. the database went away: the held answer is still true
                logger.warning("could not read a voice's verdict after its wait; answering processing", exc_info=True)
    await send_whole(send, status, headers, body)


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
            disconnect = asyncio.ensure_future(disconnected(receive))
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


async def _settle(pending: waiting.Pending, held: Held, idempotency_key: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The verdict, read in one short pool call, as the response to send."""
    request_id = (held.header(b"x-request-id") or b"").decode("latin-1")
    status, body = await in_thread(services.voice_upload_settle)(
        voice_id=pending.voice_id,
        tenant_id=pending.tenant_id,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    headers = held.headers if status < 400 else [(name, value) for name, value in held.headers if bytes(name).lower() != b"location"]
    return status, headers, JSONRenderer().render(body)
