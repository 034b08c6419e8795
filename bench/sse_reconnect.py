"""Reconnecting to a finished job's event stream with the id of its last
(``done``) event: how long until the stream has answered and closed.

    python bench/sse_reconnect.py --url http://127.0.0.1:8000 --key KEY -n 50
    python bench/sse_reconnect.py --stack -n 50     # a throwaway stack (harness.stack)

Before the fix each reconnect waited a whole keepalive (``SSE_KEEPALIVE_S``,
15 s) for an event that never comes; it should take one round trip.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import base_args, ms, percentile  # noqa: E402


def _frames(response: requests.Response) -> list[dict[str, str]]:
    frames, frame = [], {}
    for line in response.iter_lines(decode_unicode=True):
        if not line:
            if "event" in frame:
                frames.append(frame)
            frame = {}
        elif not line.startswith(":") and ": " in line:
            name, _, value = line.partition(": ")
            frame[name] = value
    return frames


def run(url: str, key: str, count: int, engine: str = "espeak") -> dict:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    job = session.post(f"{url}/v1/tts", json={"text": "Reconnect probe.", "engine": engine, "cache": False}, timeout=30).json()
    events_url = f"{url}/v1/jobs/{job['id']}/events"
    with session.get(events_url, stream=True, timeout=(5, 120)) as response:  # follows the job to its end
        frames = _frames(response)
    done = [frame for frame in frames if frame["event"] == "done" and "id" in frame]
    if not done:
        raise SystemExit(f"the stream ended without a done frame with an id: {frames}")
    last_id = done[-1]["id"]
    times: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        with session.get(events_url, headers={"Last-Event-ID": last_id}, stream=True, timeout=(5, 120)) as response:
            resumed = _frames(response)
        times.append(time.perf_counter() - started)
        assert [frame["event"] for frame in resumed] == ["done"], resumed
    return {"reconnects": count, "p50_s": percentile(times, 50), "p99_s": percentile(times, 99), "max_s": max(times)}


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--engine", default="espeak")
    parser.add_argument("--stack", action="store_true", help="start a throwaway stack (redis, gunicorn, worker) and use it")
    args = parser.parse_args()
    if args.stack:
        from harness.stack import Stack

        with tempfile.TemporaryDirectory(prefix="mynah-bench-") as workdir:
            stack = Stack(Path(workdir), extra_env={"LOG_LEVEL": "WARNING"})
            stack.start()
            try:
                result = run(stack.base_url, stack.api_key, args.n, args.engine)
            finally:
                stack.stop()
    else:
        result = run(args.url, args.key, args.n, args.engine)
    print(
        f"reconnect after done ({result['reconnects']} reconnects): p50 {ms(result['p50_s'])}, "
        f"p99 {ms(result['p99_s'])}, max {ms(result['max_s'])}"
    )


if __name__ == "__main__":
    main()
