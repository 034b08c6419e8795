"""Pickup latency with idle workers: submit one job at a time and read
started_at - created_at (both server clocks) once it has run.

    python bench/pickup.py --url http://127.0.0.1:8000 --key KEY -n 50
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, ms, percentile


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run(url: str, key: str, count: int, engine: str) -> dict:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    pickups: list[float] = []
    totals: list[float] = []
    for _ in range(count):
        job = session.post(f"{url}/v1/tts", json={"text": "Pickup probe.", "engine": engine, "cache": False}, timeout=10).json()
        while job["status"] not in {"succeeded", "failed"}:
            time.sleep(0.02)
            job = session.get(f"{url}/v1/jobs/{job['id']}", timeout=10).json()
        pickups.append(_ts(job["started_at"]) - _ts(job["created_at"]))
        totals.append(_ts(job["finished_at"]) - _ts(job["created_at"]))
        time.sleep(0.2)  # let the worker go idle again
    return {
        "jobs": count,
        "pickup_p50_s": percentile(pickups, 50),
        "pickup_p95_s": percentile(pickups, 95),
        "pickup_max_s": max(pickups),
        "total_p50_s": percentile(totals, 50),
    }


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--engine", default="espeak")
    args = parser.parse_args()
    result = run(args.url, args.key, args.n, args.engine)
    print(
        f"pickup ({result['jobs']} jobs, idle worker): p50 {ms(result['pickup_p50_s'])}, "
        f"p95 {ms(result['pickup_p95_s'])}, max {ms(result['pickup_max_s'])}; "
        f"submit->finished p50 {ms(result['total_p50_s'])}"
    )


if __name__ == "__main__":
    main()
