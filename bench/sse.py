"""Open event streams vs. submission throughput.

    python bench/sse.py --url http://127.0.0.1:8000 --key KEY --streams 500
Measures submit throughput (bench/submit.py) alone, then again while N
SSE streams (``GET /v1/jobs/{id}/events``) are held open on a running job,
and prints both, with how many streams stayed open throughout.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import submit
from common import base_args, ms

LONG_TEXT = " ".join(f"Sentence number {i} of a long running job." for i in range(100))


class OpenStreams:
    """N concurrent SSE connections held by one asyncio loop in a thread."""

    def __init__(self, url: str, key: str, job_id: str, count: int):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.request = (
            f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        self.count = count
        self.opened = threading.Event()
        self.ok = 0  # streams that answered 200
        self.frames = 0
        self.closed_early = 0
        self.open_s = 0.0
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> OpenStreams:
        self._thread.start()
        self.opened.wait(timeout=120)
        return self

    def __exit__(self, *exc) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    async def _one(self, ready: asyncio.Semaphore) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(self.request)
            await writer.drain()
            status = await reader.readline()
            if b" 200 " in status:
                self.ok += 1
            ready.release()
            while not self._stop.is_set():
                line = await reader.readline()
                if not line:
                    self.closed_early += 1
                    return
                if line.startswith(b"event:"):
                    self.frames += 1
        finally:
            writer.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Semaphore(0)
        started = time.perf_counter()
        tasks = [asyncio.create_task(self._one(ready)) for _ in range(self.count)]
        for _ in range(self.count):
            await ready.acquire()
        self.open_s = time.perf_counter() - started
        self.opened.set()
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run(url: str, key: str, streams: int, total: int, concurrency: int, watch_engine: str = "piper") -> dict:
    payload = {"text": "Benchmark sentence.", "engine": "espeak", "cache": False}
    baseline = submit.run(url, key, total, concurrency, payload)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    job = session.post(f"{url}/v1/tts", json={"text": LONG_TEXT, "engine": watch_engine}, timeout=30).json()
    with OpenStreams(url, key, job["id"], streams) as open_streams:
        loaded = submit.run(url, key, total, concurrency, payload)
        still_open = open_streams.ok - open_streams.closed_early
    session.post(f"{url}/v1/jobs/{job['id']}/cancel", timeout=30)
    return {
        "streams": streams,
        "streams_ok": open_streams.ok,
        "still_open": still_open,
        "open_s": open_streams.open_s,
        "frames": open_streams.frames,
        "baseline": baseline,
        "loaded": loaded,
    }


def describe(result: dict) -> list[str]:
    base, loaded = result["baseline"], result["loaded"]
    return [
        (
            f"{result['streams_ok']}/{result['streams']} streams opened in {result['open_s']:.2f} s; "
            f"{result['still_open']} still open after the run; {result['frames']} frames received"
        ),
        f"submit without streams: {base['accepted_per_s']:.0f}/s (p99 {ms(base['p99_s'])})",
        f"submit with {result['streams']} open streams: {loaded['accepted_per_s']:.0f}/s (p99 {ms(loaded['p99_s'])})",
    ]


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--watch-engine", default="piper", help="engine of the long job the streams watch")
    args = parser.parse_args()
    print("\n".join(describe(run(args.url, args.key, args.streams, args.n, args.c, args.watch_engine))))


if __name__ == "__main__":
    main()
