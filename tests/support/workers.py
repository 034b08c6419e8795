"""A real Dramatiq Worker on the in-memory broker, for tests that need jobs,
deliveries or voice analyses processed in the background."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq


@contextmanager
def running_worker(broker: dramatiq.Broker, *, worker_timeout: int = 50, threads: int = 2) -> Iterator[dramatiq.Worker]:
    """``worker_timeout`` (ms) is how often idle worker threads look for
    messages: small values make delayed messages (retries) start sooner.
    Like ``rundramatiq``, it declares every app's actors first: services send
    by actor name and never import them."""
    from django.conf import settings
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
    worker = dramatiq.Worker(broker, worker_timeout=worker_timeout, worker_threads=threads)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def wait_for_job(api, job_id: str, timeout: float = 60.0) -> dict:
    """Poll the API until the job is terminal; its body."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {body}")
