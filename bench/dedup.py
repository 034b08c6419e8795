"""Dedup: repeat an already generated request N times.

    python bench/dedup.py --url URL --key KEY -n 200
Prints the cache-hit submit latency (p50/p99; target p99 < 20 ms) and how
many engine runs were avoided.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, ms, percentile, session_for, ts, wait_all_done


def run(url: str, key: str, repeats: int, engine: str = "espeak") -> dict:
    session = session_for(key)
    payload = {"text": f"Deduplicate me, run {time.time_ns()}.", "engine": engine}
    first = session.post(f"{url}/v1/tts", json=payload, timeout=30).json()
    while session.get(f"{url}/v1/jobs/{first['id']}", timeout=30).json()["status"] != "succeeded":
        time.sleep(0.05)
    latencies, hits = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        body = session.post(f"{url}/v1/tts", json=payload, timeout=30).json()
        latencies.append(time.perf_counter() - started)
        hits += body["cache_hit"] and body["status"] == "succeeded"
    jobs = [job for job in wait_all_done(url, key) if job["input"]["text"] == payload["text"]]
    engine_runs = sum(1 for job in jobs if not job["cache_hit"])
    return {
        "repeats": repeats,
        "hits": hits,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "engine_runs": engine_runs,
        "avoided": len(jobs) - engine_runs,
        "first_run_s": ts(first["created_at"]),
    }


def describe(result: dict) -> str:
    return (
        f"dedup: {result['hits']}/{result['repeats']} repeats were cache hits, p50 {ms(result['p50_s'])}, "
        f"p99 {ms(result['p99_s'])}; engine runs {result['engine_runs']} (avoided {result['avoided']})"
    )


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    print(describe(run(args.url, args.key, args.n)))


if __name__ == "__main__":
    main()
