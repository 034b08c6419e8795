"""Tenant isolation under a flood of voice uploads waiting for their analysis.

    python bench/voice_upload_isolation.py [--flood 24] [-n 200]
        starts a throwaway stack (2 web processes x 8 threads, as `make bench`)
        whose worker is frozen, so every upload waits its full
        VOICE_ANALYSIS_WAIT_S for a verdict that does not come
    python bench/voice_upload_isolation.py --url URL --key KEY_A --other-key KEY_B [--redis-url URL]
        against a running server whose voice workers are busy

Tenant B's GET /v1/usage and GET /healthz, sent on a fixed schedule (open
loop, ``--rate`` per second each): p50/p99 idle, then while tenant A has
``--flood`` uploads waiting. It
prints how many uploads were waiting (Redis connections blocked on an
analysis notice) when the measurement started and ended: a number measured
after the uploads stopped waiting says nothing.
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


def _prompt() -> bytes:
    """Real speech: where a worker does run, the analysis accepts it."""
    from harness.audio_samples import encode, padded, speech

    with tempfile.TemporaryDirectory() as workdir:
        return encode(padded(speech("en+f3")), Path(workdir) / "prompt.wav", "wav").read_bytes()


def _latencies(url: str, key: str, n: int, rate: float) -> dict[str, list[float]]:
    """Open loop: ``n`` requests per path at ``rate`` per second each, sent on
    schedule whether or not earlier ones were answered; a latency counts from
    the request's scheduled time, so a stall shows in every request it delays
    (a closed loop would send one request into it, and wait)."""
    import requests

    paths = ("/v1/usage", "/healthz")
    results: dict[str, list[float]] = {path: [] for path in paths}
    local = threading.local()
    lock = threading.Lock()
    origin = time.perf_counter() + 0.1

    def probe(index: int) -> None:
        path = paths[index % len(paths)]
        scheduled = origin + index / (rate * len(paths))
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {key}"
        response = local.session.get(f"{url}{path}", timeout=120)
        elapsed = time.perf_counter() - scheduled
        assert response.status_code == 200, response.text
        with lock:
            results[path].append(elapsed)

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(probe, range(n * len(paths))))
    return results


def run(url: str, key: str, other_key: str, flood: int, n: int, rate: float = 40.0, redis_url: str | None = None) -> dict:
    import redis
    import requests

    blocked = (lambda: -1) if redis_url is None else _blocked_counter(redis.Redis.from_url(redis_url))
    prompt = _prompt()
    _latencies(url, other_key, 10, rate)  # warm connections and caches
    idle = _latencies(url, other_key, n, rate)

    def upload(index: int) -> int:
        files = {"audio": ("prompt.wav", prompt)}
        response = requests.post(
            f"{url}/v1/voices", headers={"Authorization": f"Bearer {key}"}, files=files, data={"name": f"flood {index}"}, timeout=600
        )
        return response.status_code

    pool = ThreadPoolExecutor(max_workers=flood)
    answered = threading.Event()
    futures = [pool.submit(upload, index) for index in range(flood)]
    for future in futures:
        future.add_done_callback(lambda _: answered.set())
    # Until every upload waits, or their number stops growing for 2 s (a
    # server that waits in its threads holds no more than it has threads).
    deadline, seen, steady_since = time.monotonic() + 30, 0, time.monotonic()
    while time.monotonic() < deadline and not answered.is_set() and seen not in (-1, flood):
        count = blocked()
        if count != seen:
            seen, steady_since = count, time.monotonic()
        elif count > 0 and time.monotonic() - steady_since > 2:
            break
        time.sleep(0.05)
    if seen == -1:
        time.sleep(3)  # no Redis to look at: give the flood time to land
    waiting_at_start = blocked()
    started = time.perf_counter()
    loaded = _latencies(url, other_key, n, rate)
    measured_s = time.perf_counter() - started
    waiting_at_end = blocked()
    answered_during = sum(future.done() for future in futures)
    pool.shutdown(wait=False, cancel_futures=True)
    return {
        "flood": flood,
        "n": n,
        "rate": rate,
        "waiting_at_start": waiting_at_start,
        "waiting_at_end": waiting_at_end,
        "uploads_answered_during": answered_during,
        "measured_s": measured_s,
        "idle": {path: (percentile(values, 50), percentile(values, 99)) for path, values in idle.items()},
        "loaded": {path: (percentile(values, 50), percentile(values, 99)) for path, values in loaded.items()},
        "loaded_max_s": max(max(values) for values in loaded.values()),
    }


def _blocked_counter(client):
    def count() -> int:
        return sum(1 for entry in client.client_list() if entry.get("cmd") == "blpop")

    return count


def run_with_stack(flood: int = 24, n: int = 200, rate: float = 40.0, web_workers: int = 2, web_threads: int = 8) -> dict:
    """A throwaway stack whose worker is frozen: every upload waits VOICE_ANALYSIS_WAIT_S."""
    from harness.stack import Stack

    with tempfile.TemporaryDirectory(prefix="mynah-bench-voices-") as workdir:
        stack = Stack(
            Path(workdir),
            web_workers=web_workers,
            worker_threads=1,
            extra_env={
                "WEB_THREADS": str(web_threads),
                "VOICE_ANALYSIS_WAITING_PER_TENANT": str(flood),  # every upload of the flood waits: the worst case
                "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
                "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
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
        f"tenant B, {result['n']} requests per path at {result['rate']:.0f}/s each (open loop), idle and while tenant A has "
        f"{result['flood']} uploads waiting" + (f" ({result['web']})" if "web" in result else ""),
    ]
    for path in ("/v1/usage", "/healthz"):
        idle, loaded = result["idle"][path], result["loaded"][path]
        lines.append(f"  {path:10} p50 / p99: idle {ms(idle[0])} / {ms(idle[1])}; during the flood {ms(loaded[0])} / {ms(loaded[1])}")
    lines.append(f"  slowest request during the flood: {ms(result['loaded_max_s'])}; measured over {result['measured_s']:.1f} s")
    lines.append(
        f"  uploads waiting on their analysis at the start / end of the measurement: "
        f"{result['waiting_at_start']} / {result['waiting_at_end']} (-1: unknown, no --redis-url); "
        f"answered meanwhile: {result['uploads_answered_during']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--other-key", help="API key of a second tenant (with --key: against --url)")
    parser.add_argument("--redis-url", help="the server's Redis, to count waiting uploads")
    parser.add_argument("--flood", type=int, default=24, help="tenant A's concurrent uploads")
    parser.add_argument("-n", type=int, default=200, help="tenant B's requests per path, idle and during the flood")
    parser.add_argument("--rate", type=float, default=40.0, help="tenant B's requests per second per path")
    args = parser.parse_args()
    if args.key and args.other_key:
        result = run(args.url, args.key, args.other_key, args.flood, args.n, args.rate, redis_url=args.redis_url)
    else:
        result = run_with_stack(args.flood, args.n, args.rate)
    print(describe(result))


if __name__ == "__main__":
    main()
