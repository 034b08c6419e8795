"""A Locust scenario: API clients that submit speech jobs, poll them and
download what they made, the mix a real integration sends.

    .venv/bin/pip install locust==2.47.0   # not a project requirement (README, "Load testing")
    MYNAH_API_KEY=KEY .venv/bin/locust -f bench/locustfile.py --headless \\
        -u 64 -r 16 -t 30s --host http://127.0.0.1:8000

Each simulated client submits a short sentence (unique, so every submit
makes a job; one in ten repeats a common phrase, which dedup answers from
the first one's result), then polls the job every second until it ends and
downloads the audio; meanwhile it checks its usage now and then. Locust
prints requests/s, failures and latency percentiles per request name.
Raise the tenant's limits above the load first (README, "Load testing"),
or the rate limit's 429s count as failures.
"""

from __future__ import annotations

import itertools
import os
import threading

from locust import HttpUser, between, task

_counter = itertools.count()
_counter_lock = threading.Lock()


def _next_text() -> str:
    with _counter_lock:
        index = next(_counter)
    if index % 10 == 9:
        return "Your order has shipped."  # a repeated phrase: a dedup hit after the first
    return f"Locust client sentence number {index} on process {os.getpid()}."


class ApiClient(HttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        key = os.environ.get("MYNAH_API_KEY")
        if not key:
            raise RuntimeError("Set MYNAH_API_KEY to an API key (make run prints one).")
        self.client.headers["Authorization"] = f"Bearer {key}"
        self.pending: list[str] = []

    @task(3)
    def submit(self) -> None:
        with self.client.post("/v1/tts", json={"text": _next_text(), "engine": "espeak"}, name="POST /v1/tts", catch_response=True) as r:
            if r.status_code in (201, 202):
                self.pending.append(r.json()["id"])
                r.success()
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(6)
    def poll(self) -> None:
        if not self.pending:
            return
        job_id = self.pending[0]
        with self.client.get(f"/v1/jobs/{job_id}", name="GET /v1/jobs/{id}", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            job = r.json()
        if job["status"] in ("queued", "running"):
            return
        self.pending.pop(0)
        if job["status"] == "succeeded":
            with self.client.get(f"/v1/jobs/{job_id}/result", name="GET /v1/jobs/{id}/result", catch_response=True) as r:
                if r.status_code == 200 and r.content:
                    r.success()
                else:
                    r.failure(f"{r.status_code}: {len(r.content)} bytes")

    @task(1)
    def usage(self) -> None:
        self.client.get("/v1/usage", name="GET /v1/usage")
