"""Requests waiting under ``Prefer: wait`` hold no web thread (issue 20, item 1).

A real stack (gunicorn + Uvicorn, redis-server, a Dramatiq worker) with two
web threads. The worker is frozen, so no job can finish: every waiting
submission waits. Tenant A sends five times more waiting submissions than
the web process has threads; while they all wait (each a connection blocked
on its job's event stream), tenant B's requests are answered, B's own
waiting submission included. Then A's jobs are canceled, and each waiting
request is woken by its job's end and answered with it (201). No timing is
asserted: each check is an order of events.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import redis
import requests

from harness.stack import Stack

pytestmark = pytest.mark.integration

WEB_THREADS = 2
WAITERS = 5 * WEB_THREADS


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    running = Stack(tmp_path, worker_threads=1, extra_env={"WEB_THREADS": str(WEB_THREADS), "LOG_LEVEL": "WARNING"}).start()
    try:
        yield running
    finally:
        _thaw(running)
        running.stop()


def _freeze(stack: Stack) -> None:
    os.killpg(stack.supervisor.children["worker"].process.pid, signal.SIGSTOP)


def _thaw(stack: Stack) -> None:
    child = stack.supervisor.children.get("worker")
    if child is not None and child.process.poll() is None:
        os.killpg(child.process.pid, signal.SIGCONT)


def _waiting(client: redis.Redis) -> int:
    """Connections blocked on a job's event stream (XREAD): waiting requests."""
    return sum(1 for entry in client.client_list() if entry.get("cmd") == "xread")


def _submit(stack: Stack, key: str, text: str, wait_s: int = 60) -> requests.Response:
    headers = {**stack.headers(key), "Prefer": f"wait={wait_s}"}
    return requests.post(f"{stack.base_url}/v1/tts", json={"text": text, "engine": "espeak"}, headers=headers, timeout=120)


def test_waiting_submissions_hold_no_thread(stack):
    _freeze(stack)
    client = redis.Redis(port=stack.redis_port)
    a_key, b_key = stack.api_key, stack.other_api_key
    pool = ThreadPoolExecutor(max_workers=WAITERS + 1)
    try:
        waiting_a: list[Future[requests.Response]] = [pool.submit(_submit, stack, a_key, f"Waiting number {i}.") for i in range(WAITERS)]
        stack.wait_until(lambda: _waiting(client) == WAITERS, timeout=120, what=f"{WAITERS} submissions waiting")

        # Tenant B is answered meanwhile: reads, a plain submit, and a waiting submit of its own.
        usage = requests.get(f"{stack.base_url}/v1/usage", headers=stack.headers(b_key), timeout=120)
        health = requests.get(f"{stack.base_url}/healthz", timeout=120)
        plain = requests.post(
            f"{stack.base_url}/v1/tts", json={"text": "B, now.", "engine": "espeak"}, headers=stack.headers(b_key), timeout=120
        )
        assert (usage.status_code, health.status_code, plain.status_code) == (200, 200, 202)
        waiting_b = pool.submit(_submit, stack, b_key, "B waits too.")
        stack.wait_until(lambda: _waiting(client) == WAITERS + 1, timeout=120, what="B's submission waiting")
        assert not any(future.done() for future in [*waiting_a, waiting_b]), "a waiting submission was answered before its job ended"

        # A's jobs end (canceled): each of A's waiting requests is woken and answered with its job.
        queued = requests.get(f"{stack.base_url}/v1/jobs?status=queued&limit=100", headers=stack.headers(a_key), timeout=120).json()
        assert len(queued["results"]) == WAITERS
        for job in queued["results"]:
            assert requests.post(f"{stack.base_url}/v1/jobs/{job['id']}/cancel", headers=stack.headers(a_key), timeout=120).ok
        answers = [future.result(timeout=120) for future in waiting_a]
        assert [(answer.status_code, answer.json()["status"]) for answer in answers] == [(201, "canceled")] * WAITERS
        assert {answer.headers["Preference-Applied"] for answer in answers} == {"wait=60"}
        assert not waiting_b.done()  # B's job is still queued: B still waits

        # The worker runs again: B's job finishes within its wait.
        _thaw(stack)
        answer = waiting_b.result(timeout=120)
        assert (answer.status_code, answer.json()["status"]) == (201, "succeeded"), answer.text
    finally:
        _thaw(stack)
        pool.shutdown(wait=False, cancel_futures=True)
