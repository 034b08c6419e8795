"""The ASGI entry point, driven in-process with ASGI messages."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from django.core.signals import request_finished

from audit.models import AuditEvent
from config.asgi import application, apply_forwarded_headers


def _call(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    *,
    chunks: list[bytes] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 1),
    scope_out: dict | None = None,
) -> tuple[int, dict, bytes]:
    """One request through the ASGI application; ``chunks``: the body in
    several ``http.request`` events, as a chunked upload arrives."""
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
        "client": client,
        "server": ("127.0.0.1", 80),
    }
    if scope_out is not None:
        scope_out["scope"] = scope
    messages: list[dict] = []
    parts = chunks if chunks is not None else [body]
    pending = [{"type": "http.request", "body": part, "more_body": index < len(parts) - 1} for index, part in enumerate(parts)]
    if scope_out is not None:
        scope_out["pending"] = pending  # what the application left unread

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


def test_audio_stream_requests_with_a_body_are_refused():
    status, _, body = _call("GET", "/v1/jobs/123/audio-stream", [(b"content-length", b"10")], b"0123456789")
    assert status == 400 and json.loads(body)["error"]["code"] == "malformed_request"


@pytest.mark.django_db(transaction=True)
def test_audio_streams_are_served_without_a_pool_thread(api, tenant):
    """Every thread of the WSGI pool is busy: a speech job's audio stream
    still answers, because it runs on the event loop (as event streams do)."""
    import threading

    from django.core.files.storage import default_storage

    from config import asgi
    from jobs import services
    from jobs.services import TtsParams

    params = TtsParams(text="On the loop.", language="en", engine="tone", format="wav", speed=1.0)
    job = services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None, use_cache=False)
    services.job_run(job_id=str(job.id))
    job.refresh_from_db()
    release = threading.Event()
    busy = [asgi._executor.submit(release.wait, 30) for _ in range(asgi._executor._max_workers)]
    try:
        status, headers, body = _call("GET", f"/v1/jobs/{job.id}/audio-stream", [(b"authorization", b"Bearer " + api.raw_key.encode())])
        # Through the pool it could only have answered once a busy thread gave up (30 s).
        assert not any(future.done() for future in busy)
    finally:
        release.set()
        for future in busy:
            future.result(timeout=30)
    assert status == 200, body
    assert headers.get(b"content-type", headers.get(b"Content-Type")) == b"audio/wav"
    with default_storage.open(job.result_key) as handle:
        assert body == handle.read()


@pytest.mark.django_db(transaction=True)
def test_head_on_an_event_stream_is_405(api):
    key = api.raw_key.encode()
    status, _, _body = _call("HEAD", "/v1/jobs/00000000-0000-0000-0000-000000000000/events", [(b"authorization", b"Bearer " + key)])
    assert status == 405


# --- Chunked bodies (Transfer-Encoding: chunked, no Content-Length)
CHUNKED = [(b"transfer-encoding", b"chunked"), (b"content-type", b"application/json")]


@pytest.mark.django_db(transaction=True)
def test_a_chunked_json_body_is_read_whole_and_submits_the_job(api, stub_broker):
    payload = json.dumps({"text": "Chunked bodies are read, not taken for empty.", "engine": "espeak"}).encode()
    chunks = [payload[:10], payload[10:25], payload[25:]]
    headers = [*CHUNKED, (b"authorization", b"Bearer " + api.raw_key.encode())]
    status, _, body = _call("POST", "/v1/tts", headers, chunks=chunks)
    assert status == 202, body
    assert json.loads(body)["input"]["text"] == "Chunked bodies are read, not taken for empty."


def test_a_chunked_body_over_the_route_limit_is_refused_while_it_arrives(settings):
    settings.MAX_JSON_BODY_BYTES = 4096
    seen: dict = {}
    chunks = [b"x" * 1024] * 100  # 100 KiB announced by nothing
    status, headers, body = _call("POST", "/v1/tts", CHUNKED, chunks=chunks, scope_out=seen)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and error["details"] == {"limit_bytes": 4096}
    assert headers[b"x-request-id"].decode() == error["request_id"]
    assert len(seen["pending"]) >= 90  # refused after the limit, not after the whole body


def test_a_chunked_upload_over_its_limit_is_file_too_large(settings):
    settings.UPLOAD_BODY_LIMITS = {**settings.UPLOAD_BODY_LIMITS, "/v1/voices": 2048}
    status, _, body = _call("POST", "/v1/voices", [(b"transfer-encoding", b"chunked")], chunks=[b"y" * 1024] * 10)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large"


def test_a_declared_length_over_the_route_limit_is_refused_before_reading(settings):
    settings.MAX_JSON_BODY_BYTES = 4096
    seen: dict = {}
    status, _, body = _call("POST", "/v1/tts", [(b"content-length", b"5000")], chunks=[b"x" * 1000] * 5, scope_out=seen)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert len(seen["pending"]) == 5  # not a byte read


# --- Forwarded headers: believed from TRUSTED_PROXIES only
def _scope(peer: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "scheme": "http", "client": (peer, 5000), "headers": [(b"host", b"api"), *headers]}


def test_forwarded_headers_from_an_untrusted_peer_are_dropped(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    scope = _scope("203.0.113.9", (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https"), (b"x-real-ip", b"6.6.6.6"))
    apply_forwarded_headers(scope)
    assert scope["client"] == ("203.0.113.9", 5000) and scope["scheme"] == "http"
    assert scope["headers"] == [(b"host", b"api")]


def test_by_default_no_peer_is_trusted_not_even_loopback(settings):
    settings.TRUSTED_PROXIES = []
    scope = _scope("127.0.0.1", (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https"))
    apply_forwarded_headers(scope)
    assert scope["client"] == ("127.0.0.1", 5000) and scope["scheme"] == "http"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        (b"198.51.100.7", "198.51.100.7"),
        # A client's own X-Forwarded-For is on the left: the proxy appended the real peer.
        (b"6.6.6.6, 198.51.100.7", "198.51.100.7"),
        # Two trusted hops: the right-most address that is not a proxy.
        (b"6.6.6.6, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
        (b"[2001:db8::5]:4711, 10.1.2.3", "2001:db8::5"),
        (b"198.51.100.7:4711", "198.51.100.7"),
        # Garbage stops the walk at the last hop that made sense.
        (b"198.51.100.7, unknown, 10.1.2.3", "10.1.2.3"),
        (b"unknown", "10.9.9.9"),
    ],
)
def test_a_trusted_proxy_tells_the_client_and_the_scheme(settings, forwarded_for, client):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8:ffff::/48"]
    scope = _scope("10.9.9.9", (b"x-forwarded-for", forwarded_for), (b"x-forwarded-proto", b"https"))
    apply_forwarded_headers(scope)
    assert scope["client"][0] == client
    assert scope["scheme"] == "https"


def test_a_trusted_proxy_cannot_set_an_odd_scheme(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    scope = _scope("10.9.9.9", (b"x-forwarded-proto", b"javascript"))
    apply_forwarded_headers(scope)
    assert scope["scheme"] == "http"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("redis_url")
def test_the_client_address_in_the_app_follows_the_trusted_proxy_rule(settings):
    """Through the whole application: the audited address of a failed
    authentication is the peer, unless the peer is a trusted proxy."""
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    bad_key = [(b"authorization", b"Bearer " + f"nope{uuid.uuid4().hex[:8]}.secret".encode())]
    spoofed = [*bad_key, (b"x-forwarded-for", b"192.0.2.44")]
    assert _call("GET", "/v1/jobs", spoofed, client=("203.0.113.50", 1))[0] == 401
    assert _call("GET", "/v1/jobs", spoofed, client=("10.0.0.2", 1))[0] == 401
    addresses = set(AuditEvent.objects.filter(action="auth.failure").values_list("ip", flat=True))
    assert addresses == {"203.0.113.50", "192.0.2.44"}


def test_a_crash_of_the_router_is_a_json_500(monkeypatch):
    """uvicorn would answer a plain-text 500; the router answers in the shape."""
    import config.asgi

    async def broken(self, scope, receive, send) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(config.asgi._PooledWsgi, "__call__", broken)
    status, headers, body = _call("GET", "/healthz")
    assert status == 500 and headers[b"content-type"] == b"application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "internal_error" and error["request_id"] == headers[b"x-request-id"].decode()


def _served_by(app, monkeypatch, sent: list[dict]) -> list[dict]:
    """The messages a plain WSGI ``app`` gives the server, in ``sent``."""
    import config.asgi

    monkeypatch.setattr(config.asgi, "django_wsgi", app)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/anything", "raw_path": b"/anything", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    return sent


def _app_noting_what_was_sent(chunks: list[bytes], sent: list[dict], seen: list[int]):
    """A WSGI app that notes, before each chunk it produces, how many
    messages the server had sent."""

    def body():
        for chunk in chunks:
            seen.append(len(sent))
            yield chunk

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body()

    return app


def test_a_short_response_is_sent_whole_once_produced(monkeypatch):
    sent: list[dict] = []
    seen: list[int] = []
    _served_by(_app_noting_what_was_sent([b"one ", b"two ", b"three"], sent, seen), monkeypatch, sent)
    assert seen == [0, 0, 0]  # nothing crossed to the loop while the thread worked
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"one two three" and not sent[1].get("more_body")


def test_a_response_over_the_hold_limit_streams_as_produced_and_complete(monkeypatch):
    from config.asgi import RESPONSE_HOLD_BYTES

    chunks = [bytes([index]) * (RESPONSE_HOLD_BYTES // 3) for index in range(7)]
    sent: list[dict] = []
    seen: list[int] = []
    _served_by(_app_noting_what_was_sent(chunks, sent, seen), monkeypatch, sent)
    assert seen[:4] == [0, 0, 0, 0] and seen[-1] > 0  # held up to the limit, then streamed
    assert sent[0]["type"] == "http.response.start" and sent[-1] == {"type": "http.response.body"}
    assert b"".join(message.get("body", b"") for message in sent[1:]) == b"".join(chunks)
    assert all(message.get("more_body") for message in sent[1:-1])
