"""The ASGI entry point, driven in-process with ASGI messages."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.core.signals import request_finished

from config.asgi import application


def _call(method: str, path: str, headers: list[tuple[bytes, bytes]] = (), body: bytes = b"") -> tuple[int, dict, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages: list[dict] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(application(scope, receive, send))
    start = next(message for message in messages if message["type"] == "http.response.start")
    content = b"".join(message.get("body", b"") for message in messages if message["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), content


@pytest.mark.django_db(transaction=True)
def test_regular_requests_finish_properly_so_connections_are_released():
    finished: list[object] = []

    def on_finished(**kwargs) -> None:
        finished.append(kwargs)

    request_finished.connect(on_finished)
    try:
        status, headers, body = _call("GET", "/healthz")
    finally:
        request_finished.disconnect(on_finished)
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert b"x-request-id" in headers
    assert len(finished) == 1


def test_bodies_over_the_limit_are_refused_before_django(settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    status, _, body = _call("POST", "/v1/tts", [(b"content-length", b"5000")], b"x" * 5000)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    status, _, body = _call("POST", "/v1/tts", [(b"transfer-encoding", b"chunked")], b"x" * 5000)  # no length declared
    assert status == 413


def test_event_stream_requests_with_a_body_are_refused():
    status, _, body = _call("GET", "/v1/jobs/123/events", [(b"content-length", b"10")], b"0123456789")
    assert status == 400 and json.loads(body)["error"]["code"] == "malformed_request"


@pytest.mark.django_db(transaction=True)
def test_head_on_an_event_stream_is_405(api):
    key = api.raw_key.encode()
    status, _, _body = _call("HEAD", "/v1/jobs/00000000-0000-0000-0000-000000000000/events", [(b"authorization", b"Bearer " + key)])
    assert status == 405
