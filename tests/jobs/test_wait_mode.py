"""``Prefer: wait=N`` on job submissions, through config.asgi in-process
(the router gunicorn's Uvicorn workers serve): the view submits in the pool,
the wait runs on the event loop (jobs/wait.py, core/handoff.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
from asgiref.testing import ApplicationCommunicator

from jobs.models import Job
from jobs.wait import prefer_wait_s
from tests.support.workers import running_worker

pytestmark = pytest.mark.django_db(transaction=True)  # the pool threads and the worker need committed rows


@pytest.fixture
def worker(stub_broker):
    with running_worker(stub_broker) as running:
        yield running


def _scope(key: str, body: bytes, headers: dict[str, str], path: str = "/v1/tts") -> dict[str, Any]:
    fields = {"authorization": f"Bearer {key}", "content-type": "application/json", "content-length": str(len(body)), **headers}
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")] + [(name.encode(), value.encode()) for name, value in fields.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def _call(
    key: str, payload: dict[str, Any] | bytes, headers: dict[str, str], during: Any = None, path: str = "/v1/tts"
) -> tuple[int, dict, dict]:
    from config.asgi import application

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    communicator = ApplicationCommunicator(application, _scope(key, body, headers, path))
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    if during is not None:
        await during()
    start = await communicator.receive_output(120)
    content = b""
    while True:  # to the end of the body (the pool thread's last message included)
        message = await communicator.receive_output(120)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    assert int(response_headers["content-length"]) == len(content)
    return start["status"], response_headers, json.loads(content)


def _post(key: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    return asyncio.run(_call(key, payload, headers or {}))


def _blocked_waiters(redis_url: str) -> int:
    return sum(1 for entry in redis.Redis.from_url(redis_url).client_list() if entry.get("cmd") == "xread")


def _until_one_waits(redis_url: str) -> None:
    while _blocked_waiters(redis_url) < 1:
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("wait=5", 5),
        ("respond-async, wait=10", 10),
        ('wait="7"', 7),
        ("WAIT = 3", 3),
        ("wait", 60),
        ("wait=600", 60),
        ("wait=0", 0),
        ("handling=lenient", None),
        ("waiting=5", None),
        ("wait=abc", None),
    ],
)
def test_prefer_header_parsing(settings, header, expected):
    settings.JOB_WAIT_MAX_S = 60
    assert prefer_wait_s(header) == expected


def test_a_fast_job_is_answered_finished(api, worker):
    status, headers, job = _post(api.raw_key, {"text": "Ready now.", "engine": "espeak"}, {"prefer": "wait=30"})
    assert (status, job["status"]) == (201, "succeeded"), job
    assert headers["preference-applied"] == "wait=30"
    assert headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["result"]["duration_s"] > 0
    assert api.get(f"/v1/jobs/{job['id']}").json() == job


def test_an_unfinished_job_is_the_usual_202_after_the_wait(api, stub_broker):
    # No worker runs: the job stays queued; only the deadline ends the wait.
    status, headers, job = _post(api.raw_key, {"text": "Nobody runs me.", "engine": "espeak"}, {"prefer": "wait=1"})
    assert (status, job["status"]) == (202, "queued"), job
    assert headers["preference-applied"] == "wait=1"
    assert headers["location"] == f"/v1/jobs/{job['id']}"


def test_a_waiting_request_is_woken_by_the_jobs_end(api, stub_broker, redis_url):
    """The job ends (here: canceled) while the request waits on its events."""
    job_ids: list[str] = []

    async def cancel_while_waiting() -> None:
        await asyncio.to_thread(_until_one_waits, redis_url)
        job_ids.append(str(await asyncio.to_thread(lambda: Job.objects.get().id)))
        response = await asyncio.to_thread(api.post, f"/v1/jobs/{job_ids[0]}/cancel")
        assert response.status_code == 200

    status, headers, job = asyncio.run(
        _call(api.raw_key, {"text": "Cancel me.", "engine": "espeak"}, {"prefer": "wait=60"}, during=cancel_while_waiting)
    )
    assert (status, job["id"], job["status"]) == (201, job_ids[0], "canceled")
    assert headers["preference-applied"] == "wait=60"


def test_a_cache_hit_is_answered_at_once_and_a_replay_waits_too(api, worker, stub_broker):
    payload = {"text": "Say it twice.", "engine": "espeak"}
    first = _post(api.raw_key, payload, {"prefer": "wait=30", "idempotency-key": "w-1"})
    assert (first[0], first[2]["status"]) == (201, "succeeded")
    worker.stop()  # nothing runs from here on: only a finished output can answer
    hit = _post(api.raw_key, payload, {"prefer": "wait=30"})
    assert (hit[0], hit[2]["status"], hit[2]["cache_hit"]) == (201, "succeeded", True)
    assert hit[1]["preference-applied"] == "wait=30"
    # The key's record holds the submit's queued answer; the replay answers with the job as it is now.
    replay = _post(api.raw_key, payload, {"prefer": "wait=30", "idempotency-key": "w-1"})
    assert (replay[0], replay[1]["idempotent-replayed"], replay[2]["id"]) == (200, "true", first[2]["id"])
    assert replay[2]["status"] == "succeeded"


def test_the_replay_of_a_submit_that_died_after_its_commit_waits_too(api, stub_broker):
    from core.models import IdempotencyRecord

    payload = {"text": "Committed, then the instance died.", "engine": "espeak"}
    first = _post(api.raw_key, payload, {"idempotency-key": "w-died"})
    IdempotencyRecord.objects.filter(key="w-died").update(response_status=None, response_body=None)  # died before recording it
    status, headers, job = _post(api.raw_key, payload, {"prefer": "wait=1", "idempotency-key": "w-died"})
    assert (status, headers["idempotent-replayed"], job["id"], job["status"]) == (200, "true", first[2]["id"], "queued")
    assert headers["preference-applied"] == "wait=1" and headers["location"] == f"/v1/jobs/{job['id']}"
    assert Job.objects.count() == 1


def test_without_prefer_or_under_plain_wsgi_nothing_waits(api, stub_broker):
    status, headers, job = _post(api.raw_key, {"text": "No preference.", "engine": "espeak"})
    assert (status, job["status"]) == (202, "queued") and "preference-applied" not in headers
    # The test client is plain WSGI: no event loop to wait on, the preference is not applied.
    response = api.post("/v1/tts", {"text": "Plain WSGI.", "engine": "espeak"}, format="json", HTTP_PREFER="wait=30")
    assert response.status_code == 202 and "Preference-Applied" not in response


def test_errors_pass_through_untouched(api, stub_broker):
    status, headers, body = _post(api.raw_key, {"text": "", "engine": "espeak"}, {"prefer": "wait=30"})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    assert "preference-applied" not in headers


def test_a_talking_head_waits_the_same_way(api, stub_broker):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    from harness.portraits import astronaut, encoded

    image = SimpleUploadedFile("portrait.png", encoded(astronaut()), content_type="image/png")
    body = encode_multipart(BOUNDARY, {"image": image, "text": "Hello there."})
    headers = {"prefer": "wait=1", "content-type": MULTIPART_CONTENT}
    status, response_headers, job = asyncio.run(_call(api.raw_key, body, headers, path="/v1/talking-head"))
    assert (status, job["kind"], job["status"]) == (202, "talking_head", "queued"), job  # no worker: the wait runs out
    assert response_headers["preference-applied"] == "wait=1"
