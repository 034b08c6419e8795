"""Shared helpers for benchmarks (they print numbers; they never assert)."""

from __future__ import annotations

import argparse
import os
import statistics

# Benchmarks measure throughput, so a throwaway stack's tenants get request and job limits above any load.
TENANT_LIMITS_LIFTED = {
    "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
    "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
    "TENANT_MAX_ACTIVE_JOBS": "10000000",
}


def base_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=os.environ.get("MYNAH_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("MYNAH_API_KEY"), help="API key (or MYNAH_API_KEY)")
    return parser


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(q) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def session_for(key: str):
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def submit_many(url: str, key: str, payloads: list[dict], concurrency: int = 16) -> list[str]:
    """Submit payloads concurrently, keeping their order; returns job ids."""
    import threading

    ids: list[str | None] = [None] * len(payloads)
    counter = iter(range(len(payloads)))
    lock = threading.Lock()

    def client() -> None:
        session = session_for(key)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            response = session.post(f"{url}/v1/tts", json=payloads[index], timeout=60)
            response.raise_for_status()
            ids[index] = response.json()["id"]

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [job_id for job_id in ids if job_id]


def wait_all_done(url: str, key: str, timeout: float = 600.0) -> list[dict]:
    """Poll until the tenant has no queued or running job; return all its jobs."""
    import time

    session = session_for(key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        usage = session.get(f"{url}/v1/usage", timeout=30).json()
        if usage["active_jobs"] == 0:
            break
        time.sleep(0.5)
    jobs, next_url = [], f"{url}/v1/jobs?limit=100"
    while next_url:
        page = session.get(next_url, timeout=30).json()
        jobs.extend(page["results"])
        next_url = page["next"]
    return jobs


def ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
