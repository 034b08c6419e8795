"""Submit throughput: N jobs from K concurrent keep-alive clients.

    python bench/submit.py --url http://127.0.0.1:8000 --key KEY -n 2000 -c 16
Prints accepted jobs/s and p50/p99 submit latency.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, ms, percentile


def run(url: str, key: str, total: int, concurrency: int, payload: dict) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            start = time.perf_counter()
            response = session.post(f"{url}/v1/tts", json=payload, timeout=30)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    accepted = statuses.get(202, 0)
    return {
        "requests": total,
        "concurrency": concurrency,
        "accepted": accepted,
        "statuses": statuses,
        "accepted_per_s": accepted / wall,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "wall_s": wall,
    }


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--engine", default="espeak")
    args = parser.parse_args()
    result = run(args.url, args.key, args.n, args.c, {"text": "Benchmark sentence.", "engine": args.engine, "cache": False})
    print(
        f"submit: {result['accepted']}/{result['requests']} accepted with {result['concurrency']} clients in "
        f"{result['wall_s']:.2f} s -> {result['accepted_per_s']:.0f} accepted/s, "
        f"p50 {ms(result['p50_s'])}, p99 {ms(result['p99_s'])}, statuses {result['statuses']}"
    )


if __name__ == "__main__":
    main()
