"""``POST /v1/voices`` through config.asgi in-process (the router gunicorn's
Uvicorn workers serve), without a server: the view runs in the pool and the
wait for the analysis on the event loop (voices.asgi). Its answers are the
WSGI path's: the analysed voice, the rejection, or ``processing``; the
Idempotency-Key record follows the answer the client got; the per-tenant cap
and a Redis outage answer at once; a client that hangs up frees its slot."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from core.models import IdempotencyRecord
from harness.audio_samples import encode, padded, speech
from tests.support.workers import running_worker
from voices import waiting
from voices.models import VoicePrompt

pytestmark = pytest.mark.django_db(transaction=True)  # the pool threads and the worker need committed rows

NOT_AUDIO = b"\x89PNG\r\n\x1a\n" + b"\0" * 5000


@pytest.fixture(scope="module")
def prompt(tmp_path_factory) -> bytes:
    return encode(padded(speech("en+f3")), tmp_path_factory.mktemp("prompt") / "prompt.wav", "wav").read_bytes()


@pytest.fixture
def worker(stub_broker):
    with running_worker(stub_broker) as running:
        yield running


def _scope(key: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    fields = {"authorization": f"Bearer {key}", "content-type": MULTIPART_CONTENT, "content-length": str(len(body)), **headers}
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/voices",
        "raw_path": b"/v1/voices",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")] + [(name.encode(), value.encode()) for name, value in fields.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def _body(audio: bytes, name: str = "Stella") -> bytes:
    return encode_multipart(BOUNDARY, {"audio": SimpleUploadedFile("a.wav", audio), "name": name})


def _post(key: str, audio: bytes, *, headers: dict[str, str] | None = None, answer_within: float = 120) -> tuple[int, dict, dict]:
    """One upload through the ASGI app: status, headers, JSON body."""
    from config.asgi import application

    async def call() -> tuple[int, dict, dict]:
        body = _body(audio)
        communicator = ApplicationCommunicator(application, _scope(key, body, headers or {}))
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
        start = await communicator.receive_output(answer_within)
        content = await communicator.receive_output(answer_within)
        response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
        assert int(response_headers["content-length"]) == len(content["body"])
        return start["status"], response_headers, json.loads(content["body"])

    return asyncio.run(call())


def test_an_upload_is_answered_with_the_analysed_voice(api, worker, prompt):
    status, headers, voice = _post(api.raw_key, prompt, headers={"idempotency-key": "upload-1"})
    assert (status, voice["status"]) == (201, "ready"), voice
    assert voice["quality"]["score"] > 0
    assert headers["location"] == f"/v1/voices/{voice['id']}" and headers["content-type"] == "application/json"
    assert api.get(f"/v1/voices/{voice['id']}").json() == voice
    # The key replays what the client got, not the processing answer the view first recorded.
    again = api.post(
        "/v1/voices", {"audio": SimpleUploadedFile("a.wav", prompt), "name": "Stella"}, format="multipart", HTTP_IDEMPOTENCY_KEY="upload-1"
    )
    assert (again.status_code, again["Idempotent-Replayed"]) == (200, "true")
    assert again.json() == voice


def test_a_rejected_upload_is_422_leaves_nothing_and_frees_its_key(api, worker):
    status, headers, body = _post(api.raw_key, NOT_AUDIO, headers={"idempotency-key": "upload-2"})
    assert status == 422, body
    assert body["error"]["code"] == "audio_unreadable"
    assert body["error"]["request_id"] == headers["x-request-id"]
    assert "location" not in headers
    assert not VoicePrompt.objects.exists()
    assert not IdempotencyRecord.objects.filter(key="upload-2").exists()  # failed requests are not recorded
    status, _, body = _post(api.raw_key, NOT_AUDIO, headers={"idempotency-key": "upload-2"})
    assert (status, body["error"]["code"]) == (422, "audio_unreadable")  # run again, not replayed


def test_under_plain_wsgi_a_rejected_upload_frees_its_key_too(api, worker):
    """The view itself waits and removes the rejected voice: its key, linked
    to a voice that is gone, runs the upload again."""

    def upload():
        audio = SimpleUploadedFile("a.wav", NOT_AUDIO)
        return api.post("/v1/voices", {"audio": audio, "name": "Stella"}, format="multipart", HTTP_IDEMPOTENCY_KEY="upload-3")

    for _ in range(2):  # run again, not replayed
        response = upload()
        assert (response.status_code, response.json()["error"]["code"]) == (422, "audio_unreadable")
        assert not VoicePrompt.objects.exists()


def test_over_the_tenants_cap_the_upload_answers_at_once(api, tenant, stub_broker, settings, prompt):
    settings.VOICE_ANALYSIS_WAIT_S = 3600  # no worker runs: only the cap can end the request
    settings.VOICE_ANALYSIS_WAITING_PER_TENANT = 1
    held = waiting.slot_take(tenant_id=tenant.pk, hold_s=3600)  # another upload of the tenant waits
    assert held is not None
    status, _, voice = _post(api.raw_key, prompt)
    assert (status, voice["status"]) == (201, "processing")
    # The plain WSGI path is capped the same way.
    response = api.post("/v1/voices", {"audio": SimpleUploadedFile("a.wav", prompt), "name": "Stella"}, format="multipart")
    assert (response.status_code, response.json()["status"]) == (201, "processing")
    waiting.slot_release(held)
    assert VoicePrompt.objects.filter(status="processing").count() == 2  # stored and queued all the same
    assert len(stub_broker.queues["voices"].queue) == 2


def test_another_tenants_waiting_uploads_do_not_count(api, other_tenant, worker, settings, prompt):
    settings.VOICE_ANALYSIS_WAITING_PER_TENANT = 1
    held = waiting.slot_take(tenant_id=other_tenant.pk, hold_s=3600)
    assert held is not None
    status, _, voice = _post(api.raw_key, prompt)
    waiting.slot_release(held)
    assert (status, voice["status"]) == (201, "ready")


def test_with_redis_down_the_upload_answers_at_once(api, stub_broker, settings, prompt):
    from core.redis_server import free_port

    settings.VOICE_ANALYSIS_WAIT_S = 3600
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # the rate limiter fails open too
    status, _, voice = _post(api.raw_key, prompt)
    assert (status, voice["status"]) == (201, "processing")


def test_a_client_that_hangs_up_frees_its_slot_and_gets_no_answer(api, tenant, stub_broker, settings, prompt, redis_url):
    import redis

    from config.asgi import application

    settings.VOICE_ANALYSIS_WAIT_S = 3600
    client = redis.Redis.from_url(redis_url)
    key = waiting.slots_key(tenant.pk)

    async def call() -> None:
        body = _body(prompt)
        communicator = ApplicationCommunicator(application, _scope(api.raw_key, body, {}))
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
        for _ in range(600):  # until the upload waits in its slot
            if client.zcard(key) == 1:
                break
            await asyncio.sleep(0.05)
        assert client.zcard(key) == 1
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=60)  # the app returns
        assert await communicator.receive_nothing()  # and sent nothing

    asyncio.run(call())
    assert client.zcard(key) == 0
    assert VoicePrompt.objects.filter(status="processing").count() == 1  # the upload itself stands
