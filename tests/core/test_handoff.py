"""core.handoff on its own: a response passes through untouched unless its
view deferred; a deferred one is held and given, whole, to the continuation,
which answers on the event loop after the view has returned."""

from __future__ import annotations

import asyncio
from typing import Any

from core.handoff import Held, handoff_available, handoff_defer, serve_with_handoff


def _app(defer: bool, seen: list[Any]):
    """A stand-in for the pooled WSGI app: a view that may defer, then its response."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(handoff_available())

        async def continuation(held: Held, receive: Any, send: Any) -> None:
            seen.append(("continued", held.status, held.header(b"x-view"), held.body))
            await send({"type": "http.response.start", "status": 201, "headers": [(b"x-loop", b"1")]})
            await send({"type": "http.response.body", "body": b"from the loop"})

        if defer:
            assert handoff_defer(continuation)
        await send({"type": "http.response.start", "status": 202, "headers": [(b"x-view", b"yes"), (b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"pro", "more_body": True})
        await send({"type": "http.response.body", "body": b"vis"})

    return app


def _serve(defer: bool) -> tuple[list[dict], list[Any]]:
    sent: list[dict] = []
    seen: list[Any] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    asyncio.run(serve_with_handoff(_app(defer, seen), {"type": "http"}, receive, send))
    return sent, seen


def test_without_a_deferral_the_response_passes_through():
    sent, seen = _serve(defer=False)
    assert seen == [True]
    assert [message.get("status") or message.get("body") for message in sent] == [202, b"pro", b"vis"]


def test_a_deferred_response_is_held_and_handed_to_the_continuation():
    sent, seen = _serve(defer=True)
    assert seen == [True, ("continued", 202, b"yes", b"provis")]
    assert [message.get("status") or message.get("body") for message in sent] == [201, b"from the loop"]


def test_outside_serve_with_handoff_nothing_can_defer():
    async def continuation(held: Held, receive: Any, send: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    assert not handoff_available()
    assert handoff_defer(continuation) is False
