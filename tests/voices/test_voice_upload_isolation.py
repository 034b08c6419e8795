"""Voice uploads waiting for their analysis hold no web thread (issue 19, item 1).

A real stack (gunicorn + Uvicorn, redis-server, a Dramatiq worker) with two
web threads. The worker is frozen, so no analysis can finish: every upload
waits for its verdict. Tenant A sends more uploads than the web process has
threads; while they all wait, tenant B's requests (and A's own reads) are
answered, A's upload over the per-tenant cap is answered at once
(``processing``), B's own upload still gets to wait, and a client that hangs
up gives its slot back. Then the worker thaws and every waiting upload gets
its verdict. No timing is asserted: each check is an order of events ("B was
answered while A's uploads were still waiting").
"""

from __future__ import annotations

import ast
import os
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import redis
import requests

from harness.audio_samples import encode, padded, speech
from harness.stack import Stack

pytestmark = pytest.mark.integration

WEB_THREADS = 2
CAP = WEB_THREADS + 2  # tenant A fills its cap with more uploads than there are threads


@pytest.fixture(scope="module")
def prompt(tmp_path_factory) -> bytes:
    return encode(padded(speech("en+f3")), tmp_path_factory.mktemp("prompt") / "prompt.wav", "wav").read_bytes()


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    running = Stack(
        tmp_path,
        web_workers=1,
        worker_threads=1,
        extra_env={
            "WEB_THREADS": str(WEB_THREADS),
            "VOICE_ANALYSIS_WAIT_S": "300",  # longer than the test: only a verdict ends a wait
            "VOICE_ANALYSIS_WAITING_PER_TENANT": str(CAP),
            "LOG_LEVEL": "WARNING",
        },
    ).start()
    try:
        yield running
    finally:
        _thaw(running)
        running.stop()


def _freeze(stack: Stack) -> None:
    """The worker's whole process group stops: analyses queue, none finishes."""
    os.killpg(stack.supervisor.children["worker"].process.pid, signal.SIGSTOP)


def _thaw(stack: Stack) -> None:
    child = stack.supervisor.children.get("worker")
    if child is not None and child.process.poll() is None:
        os.killpg(child.process.pid, signal.SIGCONT)


def _tenant_ids(stack: Stack) -> dict[str, str]:
    code = "from tenants.models import Tenant; print({t.slug: str(t.id) for t in Tenant.objects.all()})"
    return ast.literal_eval(stack.manage("shell", "-c", code).strip().splitlines()[-1])


def _waiting(client: redis.Redis, tenant_id: str) -> int:
    """Uploads of the tenant holding a waiting slot now."""
    return int(client.zcard(f"mynah:voice-waiting:{tenant_id}"))


def _blocked_on_notices(client: redis.Redis) -> int:
    """Connections blocked on a voice analysis notice (BLPOP), whichever code path waits."""
    return sum(1 for entry in client.client_list() if entry.get("cmd") == "blpop")


def _upload_request(stack: Stack, key: str, prompt: bytes, name: str) -> requests.PreparedRequest:
    return requests.Request(
        "POST", f"{stack.base_url}/v1/voices", headers=stack.headers(key), files={"audio": ("prompt.wav", prompt)}, data={"name": name}
    ).prepare()


def _upload(stack: Stack, key: str, prompt: bytes, name: str) -> requests.Response:
    with requests.Session() as session:
        return session.send(_upload_request(stack, key, prompt, name), timeout=280)


def test_waiting_uploads_hold_no_thread_and_are_capped_per_tenant(stack, prompt):
    _freeze(stack)
    ids = _tenant_ids(stack)
    client = redis.Redis(port=stack.redis_port)
    a_key, b_key = stack.api_key, stack.other_api_key
    pool = ThreadPoolExecutor(max_workers=CAP + 2)
    try:
        # More of A's uploads than the web process has threads, all waiting at once.
        waiting_a: list[Future[requests.Response]] = [pool.submit(_upload, stack, a_key, prompt, f"A{i}") for i in range(CAP)]
        stack.wait_until(lambda: _blocked_on_notices(client) == CAP, timeout=120, what=f"{CAP} uploads waiting on their analysis")
        assert _waiting(client, ids["acme"]) == CAP

        # Tenant B (and A's own reads) are answered meanwhile.
        usage = requests.get(f"{stack.base_url}/v1/usage", headers=stack.headers(b_key), timeout=120)
        health = requests.get(f"{stack.base_url}/healthz", timeout=120)
        own_list = requests.get(f"{stack.base_url}/v1/voices", headers=stack.headers(a_key), timeout=120)
        assert (usage.status_code, health.status_code, own_list.status_code) == (200, 200, 200)
        assert sorted(voice["status"] for voice in own_list.json()["results"]) == ["processing"] * CAP
        assert not any(future.done() for future in waiting_a), "A's uploads were answered before the worker ran"
        assert _waiting(client, ids["acme"]) == CAP

        # Over A's cap: answered at once, processing (stored and queued all the same).
        over = _upload(stack, a_key, prompt, "A-over-cap")
        assert over.status_code == 201, over.text
        assert over.json()["status"] == "processing"
        assert over.headers["Location"] == f"/v1/voices/{over.json()['id']}"
        assert not any(future.done() for future in waiting_a)
        assert _waiting(client, ids["acme"]) == CAP

        # The cap is A's alone: B's upload waits. A client that hangs up gives its slot back.
        with socket.create_connection(("127.0.0.1", stack.web_port)) as hung_up:
            hung_up.sendall(_raw(_upload_request(stack, b_key, prompt, "B-hangs-up")))
            stack.wait_until(lambda: _waiting(client, ids["globex"]) == 1, timeout=120, what="B's upload waiting")
        stack.wait_until(lambda: _waiting(client, ids["globex"]) == 0, timeout=120, what="the hung-up upload's slot to be released")
        waiting_b = pool.submit(_upload, stack, b_key, prompt, "B0")
        stack.wait_until(lambda: _waiting(client, ids["globex"]) == 1, timeout=120, what="B's upload waiting")
        assert _waiting(client, ids["acme"]) == CAP
        assert not any(future.done() for future in [*waiting_a, waiting_b])

        # The worker runs again: every waiting upload gets its verdict.
        _thaw(stack)
        for future in [*waiting_a, waiting_b]:
            response = future.result(timeout=280)
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "ready", response.json()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a failed check must not wait out the uploads
    assert _waiting(client, ids["acme"]) == 0 and _waiting(client, ids["globex"]) == 0
    over_id = over.json()["id"]
    stack.wait_until(
        lambda: requests.get(f"{stack.base_url}/v1/voices/{over_id}", headers=stack.headers(a_key), timeout=30).json()["status"] == "ready",
        timeout=120,
        what="the over-cap upload's analysis",
        interval=0.5,
    )


def _raw(request: requests.PreparedRequest) -> bytes:
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    lines = [f"POST {request.path_url} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
