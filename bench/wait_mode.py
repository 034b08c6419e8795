"""Another tenant's latency while 500 submissions wait under ``Prefer: wait``.

    python bench/wait_mode.py [--flood 500] [-n 200] [--rate 30]
        starts a throwaway stack (2 web processes x 8 threads, as `make bench`)
        whose worker is frozen, so every waiting submission waits its whole
        ``Prefer: wait=60`` for a job that does not finish
    python bench/wait_mode.py --url URL --key KEY_A --other-key KEY_B [--redis-url URL]
        against a running server whose workers are busy

Tenant B's GET /v1/usage, GET /healthz and POST /v1/tts (no wait), sent on a
fixed schedule (open loop, ``--rate`` per second each): p50/p99 idle, then
while tenant A has ``--flood`` submissions waiting. It prints how many were
waiting (Redis connections blocked on a job's event stream) when the
measurement started and ended, and how many were answered meanwhile: a
number measured after the waits ended says nothing. Compare the idle and
loaded columns of one run (the machine is shared and noisy).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from common import base_args, ms, percentile  # noqa: E402

PROBES = (("GET", "/v1/usage"), ("GET", "/healthz"), ("POST", "/v1/tts"))
WAIT_S = 60


def _latencies(url: str, key: str, n: int, rate: float, label: str) -> dict[str, list[float]]:
    """Open loop: ``n`` requests per probe at ``rate`` per second each, sent on
    schedule whether or not earlier ones were answered; a latency counts from
    the request's scheduled time, so a stall shows in every request it delays."""
    import requests

    results: dict[str, list[float]] = {path: [] for _, path in PROBES}
    local = threading.local()
    lock = threading.Lock()
    origin = time.perf_counter() + 0.1

    def probe(index: int) -> None:
        method, path = PROBES[index % len(PROBES)]
        scheduled = origin + index / (rate * len(PROBES))
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {key}"
        if method == "POST":
            response = local.session.post(f"{url}{path}", json={"text": f"B {label} {index}.", "engine": "espeak"}, timeout=120)
        else:
            response = local.session.get(f"{url}{path}", timeout=120)
        elapsed = time.perf_counter() - scheduled
        assert response.status_code in (200, 202), response.text
        with lock:
            results[path].append(elapsed)

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(probe, range(n * len(PROBES))))
    return results


def _waiting_counter(redis_url: str | None):
    if redis_url is None:
        return lambda: -1
    import redis

    client = redis.Redis.from_url(redis_url)
    return lambda: sum(1 for entry in client.client_list() if entry.get("cmd") == "xread")


def run(url: str, key: str, other_key: str, flood: int, n: int, rate: float, redis_url: str | None = None) -> dict:
    import requests

    waiting = _waiting_counter(redis_url)
    _latencies(url, other_key, 10, rate, "warm")  # warm connections and caches
    idle = _latencies(url, other_key, n, rate, "idle")

    def submit(index: int) -> int:
        headers = {"Authorization": f"Bearer {key}", "Prefer": f"wait={WAIT_S}"}
        response = requests.post(f"{url}/v1/tts", json={"text": f"A waits {index}.", "engine": "espeak"}, headers=headers, timeout=600)
        return response.status_code

    pool = ThreadPoolExecutor(max_workers=flood)
    started_flood = time.monotonic()
    futures = [pool.submit(submit, index) for index in range(flood)]
    # Until every submission waits, or their number stops growing for 2 s.
    deadline, seen, steady_since = time.monotonic() + WAIT_S / 2, 0, time.monotonic()
    while time.monotonic() < deadline and seen not in (-1, flood) and not any(future.done() for future in futures):
        count = waiting()
        if count != seen:
            seen, steady_since = count, time.monotonic()
        elif count > 0 and time.monotonic() - steady_since > 2:
            break
        time.sleep(0.05)
    if seen == -1:
        time.sleep(5)  # no Redis to look at: give the flood time to land
    flood_landed_s = time.monotonic() - started_flood
    waiting_at_start = waiting()
    started = time.perf_counter()
    loaded = _latencies(url, other_key, n, rate, "loaded")
    measured_s = time.perf_counter() - started
    waiting_at_end = waiting()
    answered_during = sum(future.done() for future in futures)
    pool.shutdown(wait=False, cancel_futures=True)
    return {
        "flood": flood,
        "n": n,
        "rate": rate,
        "flood_landed_s": flood_landed_s,
        "waiting_at_start": waiting_at_start,
        "waiting_at_end": waiting_at_end,
        "answered_during": answered_during,
        "measured_s": measured_s,
        "idle": {path: (percentile(values, 50), percentile(values, 99)) for path, values in idle.items()},
        "loaded": {path: (percentile(values, 50), percentile(values, 99)) for path, values in loaded.items()},
        "loaded_max_s": max(max(values) for values in loaded.values()),
    }


def run_with_stack(flood: int = 500, n: int = 200, rate: float = 30.0, web_workers: int = 2, web_threads: int = 8) -> dict:
    """A throwaway stack whose worker is frozen: every submission waits its whole wait."""
    from harness.stack import Stack

    with tempfile.TemporaryDirectory(prefix="mynah-bench-wait-") as workdir:
        stack = Stack(
            Path(workdir),
            web_workers=web_workers,
            worker_threads=1,
            extra_env={
                "WEB_THREADS": str(web_threads),
                "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
                "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
                "TENANT_MAX_ACTIVE_JOBS": "100000",
                "LOG_LEVEL": "WARNING",
            },
        ).start()
        worker = stack.supervisor.children["worker"].process.pid
        os.killpg(worker, signal.SIGSTOP)
        try:
            result = run(stack.base_url, stack.api_key, stack.other_api_key, flood, n, rate, redis_url=stack.env["REDIS_URL"])
        finally:
            os.killpg(worker, signal.SIGCONT)
            stack.stop()
    result["web"] = f"{web_workers} web processes x {web_threads} threads"
    return result


def describe(result: dict) -> str:
    lines = [
        f"tenant B, {result['n']} requests per probe at {result['rate']:.0f}/s each (open loop), idle and while tenant A has "
        f"{result['flood']} submissions waiting (Prefer: wait={WAIT_S})" + (f" ({result['web']})" if "web" in result else ""),
    ]
    for _, path in PROBES:
        idle, loaded = result["idle"][path], result["loaded"][path]
        lines.append(f"  {path:10} p50 / p99: idle {ms(idle[0])} / {ms(idle[1])}; while A waits {ms(loaded[0])} / {ms(loaded[1])}")
    lines.append(f"  slowest request while A waits: {ms(result['loaded_max_s'])}; measured over {result['measured_s']:.1f} s")
    lines.append(
        f"  A's submissions waiting at the start / end of the measurement: {result['waiting_at_start']} / {result['waiting_at_end']} "
        f"(-1: unknown, no --redis-url); answered meanwhile: {result['answered_during']}; "
        f"the flood landed in {result['flood_landed_s']:.1f} s"
    )
    return "\n".join(lines)


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--other-key", help="API key of a second tenant (with --key: against --url)")
    parser.add_argument("--redis-url", help="the server's Redis, to count waiting submissions")
    parser.add_argument("--flood", type=int, default=500, help="tenant A's concurrent waiting submissions")
    parser.add_argument("-n", type=int, default=200, help="tenant B's requests per probe, idle and while A waits")
    parser.add_argument("--rate", type=float, default=30.0, help="tenant B's requests per second per probe")
    args = parser.parse_args()
    if args.key and args.other_key:
        result = run(args.url, args.key, args.other_key, args.flood, args.n, args.rate, redis_url=args.redis_url)
    else:
        result = run_with_stack(args.flood, args.n, args.rate)
    print(describe(result))


if __name__ == "__main__":
    main()
