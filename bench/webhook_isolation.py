"""Webhook isolation: tenant B's job webhook while tenant A fans out to slow receivers.

    python bench/webhook_isolation.py [--endpoints 40] [--delay 8] [--probes 5] [--json]

Starts a throwaway stack (redis, gunicorn, one Dramatiq worker with 8 threads,
as the webhooks worker of the Procfile) twice: with the fair share off
(TENANT_MAX_WEBHOOKS_IN_FLIGHT very large: every tenant's deliveries compete
for the threads, as before) and with the default share (4). In each:

- idle: B submits ``--probes`` speech jobs (espeak) with a ``webhook_url`` at
  a receiver that answers at once; the latency is submit -> B's receiver got
  ``job.succeeded``;
- under abuse: A registers ``--endpoints`` endpoints at a receiver that
  answers after ``--delay`` s and submits a job (its two events, started and
  succeeded, fan out to every endpoint); while A's deliveries pile up, B sends
  the same probes, one per second.

Prints B's webhook latency (p50 / max) idle and under A's fan-out, and how
long A's own deliveries took to drain (A's slowness stays A's).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from common import base_args, session_for  # noqa: E402

from harness.stack import Stack  # noqa: E402


class _Receiver:
    """A webhook receiver on loopback that answers after ``delay_s`` and
    notes when each event type arrived, by job id."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.count = 0
        self.last_at = 0.0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.monotonic()
                payload = json.loads(body)
                with lock:
                    receiver.arrivals.setdefault((payload["data"].get("id", ""), payload["type"]), now)
                    receiver.count += 1
                    receiver.last_at = now
                if delay_s:
                    time.sleep(delay_s)
                try:
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _probe(stack: Stack, receiver: _Receiver, *, count: int, gap_s: float, timeout_s: float = 600.0) -> list[float]:
    """B's latencies: submit -> its receiver got job.succeeded."""
    session = session_for(stack.other_api_key)
    submitted: dict[str, float] = {}
    for n in range(count):
        response = session.post(
            f"{stack.base_url}/v1/tts",
            json={"text": f"Probe number {n} of the other tenant.", "engine": "espeak", "cache": False, "webhook_url": receiver.url},
            timeout=30,
        )
        response.raise_for_status()
        submitted[response.json()["id"]] = time.monotonic()
        time.sleep(gap_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all((job_id, "job.succeeded") in receiver.arrivals for job_id in submitted):
        time.sleep(0.05)
    return [receiver.arrivals.get((job_id, "job.succeeded"), float("inf")) - at for job_id, at in submitted.items()]


def run_mode(share: int | None, *, endpoints: int, delay_s: float, probes: int) -> dict:
    env = {
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TENANT_MAX_WEBHOOK_ENDPOINTS": str(endpoints),
        "TENANT_MAX_WEBHOOKS_IN_FLIGHT": str(share if share is not None else 1_000_000),
        "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
        "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
    }
    fast, slow = _Receiver(), _Receiver(delay_s)
    with tempfile.TemporaryDirectory(prefix="mynah-bench-webhooks-") as workdir:
        stack = Stack(Path(workdir), worker_threads=8, extra_env=env)
        stack.start()
        try:
            _probe(stack, fast, count=1, gap_s=0)  # warm-up (engine load, first connections)
            idle = _probe(stack, fast, count=probes, gap_s=0.5)
            a = session_for(stack.api_key)
            for n in range(endpoints):
                a.post(f"{stack.base_url}/v1/webhook-endpoints", json={"url": f"{slow.url}?n={n}"}, timeout=30).raise_for_status()
            refused = a.post(f"{stack.base_url}/v1/webhook-endpoints", json={"url": f"{slow.url}?over"}, timeout=30)
            fan_out_started = time.monotonic()
            a.post(
                f"{stack.base_url}/v1/tts", json={"text": "Tenant A.", "engine": "espeak", "cache": False}, timeout=30
            ).raise_for_status()
            time.sleep(1.0)  # A's deliveries are queued and the first ones hang
            loaded = _probe(stack, fast, count=probes, gap_s=1.0)
            a_expected = 2 * endpoints  # job.started and job.succeeded, to every endpoint
            stack.wait_until(lambda: slow.count >= a_expected, timeout=a_expected * delay_s + 120, what="A's deliveries")
            a_drain_s = slow.last_at - fan_out_started
        finally:
            stack.stop()
            fast.close()
            slow.close()
    return {
        "share": share,
        "idle_p50_s": statistics.median(idle),
        "idle_max_s": max(idle),
        "loaded_p50_s": statistics.median(loaded),
        "loaded_max_s": max(loaded),
        "loaded_s": loaded,
        "a_deliveries": a_expected,
        "a_last_delivery_s": a_drain_s,
        "endpoint_over_limit": f"{refused.status_code} {refused.json().get('error', {}).get('code', '')}",
    }


def main() -> None:
    parser = base_args(__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=40)
    parser.add_argument("--delay", type=float, default=8.0)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_mode(share, endpoints=args.endpoints, delay_s=args.delay, probes=args.probes) for share in (None, 4)]
    if args.json:
        print(json.dumps(results))
        return
    print(f"A: {args.endpoints} endpoints at a receiver answering after {args.delay:g} s, one job; B: {args.probes} probes")
    for result in results:
        label = "no share (before)" if result["share"] is None else f"share {result['share']} (default)"
        print(
            f"{label:20} B webhook idle p50 {result['idle_p50_s']:.2f} s (max {result['idle_max_s']:.2f}); "
            f"during A's fan-out p50 {result['loaded_p50_s']:.2f} s (max {result['loaded_max_s']:.2f}); "
            f"A's {result['a_deliveries']} deliveries done after {result['a_last_delivery_s']:.0f} s; "
            f"endpoint #{args.endpoints + 1}: {result['endpoint_over_limit']}"
        )


if __name__ == "__main__":
    main()
