"""Isolation under a key-guessing flood: one address sends bad API keys as
fast as it can while a client at another address makes normal requests.

    python bench/auth_flood.py --stack                 # a throwaway stack (harness.stack)
    python bench/auth_flood.py --stack --limit 0       # the same with the failure limit off
    python bench/auth_flood.py --url http://127.0.0.1:8000 --key KEY

The attacker and the client are told apart by their source address
(127.0.0.3 and 127.0.0.4), so the server must listen on loopback and must
not be behind a proxy. Prints the attacker's answers (401 vs 429 and its
rate) and the client's GET /v1/usage latency (p50 / p99) before and during
the flood. Bounded: at most --guesses bad keys, at most --seconds long.
"""

from __future__ import annotations

import http.client
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import base_args, ms, percentile

ATTACKER, CLIENT = "127.0.0.3", "127.0.0.4"


class Connection:
    """A keep-alive connection from a chosen source address; reconnects when
    the server closed it (a 429 or 401 may come with Connection: close)."""

    def __init__(self, host: str, port: int, source: str):
        self.host, self.port, self.source = host, port, source
        self.connection: http.client.HTTPConnection | None = None

    def get(self, path: str, key: str) -> int:
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=(self.source, 0))
            try:
                self.connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
                response = self.connection.getresponse()
                response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def client_latencies(host: str, port: int, key: str, count: int, stop: threading.Event | None = None) -> list[float]:
    connection = Connection(host, port, CLIENT)
    latencies = []
    for _ in range(count):
        if stop is not None and stop.is_set():
            break
        started = time.perf_counter()
        status = connection.get("/v1/usage", key)
        latencies.append(time.perf_counter() - started)
        assert status == 200, status
    connection.close()
    return latencies


def run(url: str, key: str, *, guesses: int, seconds: float, attackers: int, samples: int) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    baseline = client_latencies(host, port, key, samples)

    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    remaining = iter(range(guesses))
    deadline = time.monotonic() + seconds
    stop = threading.Event()

    def attack() -> None:
        connection = Connection(host, port, ATTACKER)
        while time.monotonic() < deadline:
            with lock:
                index = next(remaining, None)
            if index is None:
                break
            status = connection.get("/v1/usage", f"guess{index:06d}.not-a-secret-{index}")
            with lock:
                statuses[status] += 1
        connection.close()

    threads = [threading.Thread(target=attack) for _ in range(attackers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()

    def watch() -> None:
        for thread in threads:
            thread.join()
        stop.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    during = client_latencies(host, port, key, 1_000_000, stop=stop)  # until the flood ends
    watcher.join()
    flood_s = time.perf_counter() - started
    return {
        "baseline": baseline,
        "during": during,
        "statuses": dict(statuses),
        "attack_rate": sum(statuses.values()) / flood_s,
        "flood_s": flood_s,
    }


def describe(result: dict, label: str) -> str:
    statuses = result["statuses"]
    return (
        f"{label}: attacker sent {sum(statuses.values())} bad keys in {result['flood_s']:.1f} s "
        f"({result['attack_rate']:.0f}/s): {statuses.get(401, 0)} x 401, {statuses.get(429, 0)} x 429; "
        f"other client GET /v1/usage p50 / p99: before {ms(percentile(result['baseline'], 50))} / "
        f"{ms(percentile(result['baseline'], 99))}, during {ms(percentile(result['during'], 50))} / "
        f"{ms(percentile(result['during'], 99))} ({len(result['during'])} requests)"
    )


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--stack", action="store_true", help="start a throwaway stack (harness.stack) instead of --url")
    parser.add_argument("--limit", type=int, default=20, help="AUTH_FAILURE_LIMIT of the --stack (0: off)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--guesses", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    options = {"guesses": args.guesses, "seconds": args.seconds, "attackers": args.attackers, "samples": args.samples}
    if not args.stack:
        print(describe(run(args.url, args.key, **options), "server at " + args.url))
        return
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from harness.stack import Stack

    extra = {
        "AUTH_FAILURE_LIMIT": str(args.limit),
        "LOG_LEVEL": "WARNING",
        "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "1000000",
        "TENANT_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    stack = Stack(
        Path(tempfile.mkdtemp(prefix="bench-auth-flood-")), web_workers=args.web_workers, worker_threads=1, extra_env=extra
    ).start()
    try:
        label = f"failure limit {args.limit}/min" if args.limit else "failure limit off"
        print(describe(run(stack.base_url, stack.api_key, **options), f"{label}, {args.web_workers} web processes"))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
