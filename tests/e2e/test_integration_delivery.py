"""Delivery end to end through real processes (redis-server, gunicorn with
Uvicorn workers, a Dramatiq worker): live SSE streams, cancel, and signed
webhooks to a real receiver."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from harness.stack import Stack
from tests.support.receivers import Receiver

pytestmark = pytest.mark.integration
SLOW_TEXT = " ".join(f"Sentence number {i} of a slow job." for i in range(40))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # One web process: if streams held workers, submissions would starve.
    running = Stack(
        tmp_path_factory.mktemp("stack"),
        web_workers=1,
        extra_env={"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "WEBHOOK_RETRY_SCHEDULE_S": "0.1,0.2"},
    ).start()
    yield running
    running.stop()


def _frames(response: requests.Response, stop_after: int | None = None) -> list[dict]:
    """Parse an SSE response as it arrives, until it closes."""
    frames, current = [], {}
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if "event" in current:
                current["data"] = json.loads(current["data"])
                frames.append(current)
                if stop_after and len(frames) >= stop_after:
                    break
            current = {}
        elif not line.startswith(":") and ": " in line:
            name, _, value = line.partition(": ")
            current[name] = value
    return frames


def _open_stream(stack: Stack, job_id: str, **headers) -> requests.Response:
    response = requests.get(
        f"{stack.base_url}/v1/jobs/{job_id}/events",
        headers={**stack.headers(), "Accept": "text/event-stream", **headers},
        stream=True,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def test_live_stream_shows_progress_then_done_and_resumes(stack):
    job_id = stack.submit(text=SLOW_TEXT, engine="slow").json()["id"]
    with _open_stream(stack, job_id) as response:
        first = _frames(response, stop_after=3)
    assert first[0]["event"] == "status"
    with _open_stream(stack, job_id, **{"Last-Event-ID": first[-1]["id"]}) as response:
        rest = _frames(response)
    assert rest[-1]["event"] == "done" and rest[-1]["data"]["status"] == "succeeded"
    ids = [frame["id"] for frame in first[1:] + rest if "id" in frame]
    assert ids == sorted(ids, key=lambda value: tuple(map(int, value.split("-"))))
    assert len(ids) == len(set(ids))  # resumed after the last seen id, no repeats
    progress = [frame["data"]["progress"] for frame in first + rest if frame["event"] == "progress"]
    assert len(progress) >= 5 and progress == sorted(progress)


def test_hundreds_of_open_streams_do_not_block_submissions(stack):
    job_id = stack.submit(text=SLOW_TEXT, engine="stuck").json()["id"]  # still running when canceled
    streams = 200
    opened = threading.Barrier(streams + 1, timeout=60)
    finals: list[dict] = []

    def listen() -> None:
        with _open_stream(stack, job_id) as response:
            opened.wait()
            finals.append(_frames(response)[-1])

    with ThreadPoolExecutor(max_workers=streams) as pool:
        listeners = [pool.submit(listen) for _ in range(streams)]
        opened.wait()  # all streams are open and waiting
        submitted = [stack.submit(text="While streams are open.", engine="tone") for _ in range(20)]
        assert [response.status_code for response in submitted] == [202] * 20
        assert requests.get(f"{stack.base_url}/v1/jobs/{submitted[0].json()['id']}", headers=stack.headers(), timeout=5).ok
        canceled = requests.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", headers=stack.headers(), timeout=5)
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        for listener in listeners:
            listener.result(timeout=60)
    assert len(finals) == streams
    assert {(frame["event"], frame["data"]["status"]) for frame in finals} == {("done", "canceled")}


def test_signed_webhooks_reach_a_real_receiver(stack):
    with Receiver() as receiver:
        created = requests.post(
            f"{stack.base_url}/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["job.started", "job.succeeded"]},
            headers=stack.headers(),
            timeout=10,
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        job_id = stack.submit(text="Webhook me.", engine="tone").json()["id"]

        def for_this_job() -> list[dict]:
            # Earlier tests' jobs of this tenant may still be finishing: their events come too.
            payloads = [Webhook(secret).verify(item.body, item.headers) for item in list(receiver.requests)]
            mine = [payload for payload in payloads if payload["data"]["id"] == job_id]
            return mine if len(mine) >= 2 else []

        payloads = stack.wait_until(for_this_job, timeout=30, what="two webhooks for the job")
    # Deliveries run in parallel and may arrive in any order; their timestamps order them.
    assert [payload["type"] for payload in sorted(payloads, key=lambda p: p["timestamp"])] == ["job.started", "job.succeeded"]
    deliveries = requests.get(f"{stack.base_url}/v1/webhook-deliveries?job_id={job_id}", headers=stack.headers(), timeout=10).json()
    assert sorted(item["status"] for item in deliveries["results"]) == ["succeeded", "succeeded"]


def test_oversized_bodies_are_refused_before_they_are_read(stack):
    import socket

    with socket.create_connection(("127.0.0.1", stack.web_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + stack.api_key.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n{"
        )
        chunks = []
        while chunk := sock.recv(65536):  # answered (and closed) without waiting for the gigabyte
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
    head, _, body = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == "payload_too_large"
