"""Streamed speech: time to the first and the last audio byte.

    python bench/speech_stream.py                       # its own stack (piper loaded at worker boot)
    python bench/speech_stream.py --url URL --key KEY   # a running deployment

For piper and a five-sentence text, at 1, 8 and 32 concurrent clients, each
client submits (``POST /v1/tts``, ``"stream": true``, ``"cache": false``)
and reads ``GET /v1/jobs/{id}/audio-stream`` to its end; times run from the
start of the POST. Next to it, the same job polled: POST without stream,
``GET /v1/jobs/{id}`` every 20 ms until it succeeded, then the result. Each
client alternates the two, so both see the same load. And a
dedup hit: the same request again, its stream's first byte (from the POST,
and from the GET alone). Prints p50 and p99; it asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, ms, percentile, ts

# Every job speaks the same text (about 8 s of speech): "cache": false makes
# each one run the engine, and the dedup hit below uses its own text.
FIVE_SENTENCES = (
    "Your order {n} has shipped. It should arrive on Tuesday afternoon. "
    "You can follow the parcel from the link in this message. "
    "If nobody is home, the driver will leave a card. Thank you for shopping with us."
)
POLL_S = 0.02


class _Http:
    """A small HTTP/1.1 client on asyncio streams (one connection per call):
    it sees the first body byte as it arrives and decodes chunked bodies."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.netloc = parts.hostname or "127.0.0.1", parts.port or 80, parts.netloc
        self.key = key

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, float | None]:
        """Status, body, and perf_counter() when the first body byte arrived."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            data = json.dumps(body).encode() if body is not None else b""
            head = f"{method} {path} HTTP/1.1\r\nHost: {self.netloc}\r\nAuthorization: Bearer {self.key}\r\nConnection: close\r\n"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            writer.write(head.encode() + b"\r\n" + data)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            return (status, *await _body(reader, headers))
        finally:
            writer.close()


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, float | None]:
    first: float | None = None
    parts: list[bytes] = []
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                break
            chunk = await reader.readexactly(size)
            first = first or time.perf_counter()
            parts.append(chunk)
            await reader.readline()
    else:
        length = int(headers.get("content-length", "0"))
        while length > 0:
            chunk = await reader.read(min(length, 65536))
            if not chunk:
                break
            first = first or time.perf_counter()
            parts.append(chunk)
            length -= len(chunk)
    return b"".join(parts), first


async def _streamed(http: _Http, text: str) -> tuple[float, float, float]:
    """First byte, last byte (from the POST) and the job's pickup (started_at - created_at)."""
    started = time.perf_counter()
    payload = {"text": text, "engine": "piper", "format": "mp3", "stream": True, "cache": False}
    status, body, _ = await http.request("POST", "/v1/tts", payload)
    assert status == 202, body
    job = json.loads(body)
    status, audio, first = await http.request("GET", urlsplit(job["audio_stream_url"]).path)
    assert status == 200 and first is not None, (status, audio[:200])
    last = time.perf_counter() - started
    job = json.loads((await http.request("GET", f"/v1/jobs/{job['id']}"))[1])  # after the measurement
    return first - started, last, ts(job["started_at"]) - ts(job["created_at"])


async def _polled(http: _Http, text: str) -> tuple[float, float, float]:
    started = time.perf_counter()
    status, body, _ = await http.request("POST", "/v1/tts", {"text": text, "engine": "piper", "format": "mp3", "cache": False})
    assert status == 202, body
    job = await _until_succeeded(http, json.loads(body)["id"])
    status, _, first = await http.request("GET", urlsplit(job["result"]["url"]).path)
    assert status == 200 and first is not None, status
    return first - started, time.perf_counter() - started, ts(job["started_at"]) - ts(job["created_at"])


async def _until_succeeded(http: _Http, job_id: str) -> dict:
    """Poll the job every POLL_S, as a client without streams would."""
    while True:
        job = json.loads((await http.request("GET", f"/v1/jobs/{job_id}"))[1])
        if job["status"] in ("succeeded", "failed", "canceled"):
            assert job["status"] == "succeeded", job
            return dict(job)
        await asyncio.sleep(POLL_S)  # polling is what is measured


async def _concurrent(http: _Http, clients: int, rounds: int) -> dict[str, list[tuple[float, float, float]]]:
    """Each client alternates a streamed and a polled job, so both see the
    same load (the machine is shared; its load drifts within minutes)."""
    results: dict[str, list[tuple[float, float, float]]] = {"streamed": [], "polled": []}

    async def client(index: int) -> None:
        for round_ in range(rounds):
            order = [("streamed", _streamed), ("polled", _polled)]
            for name, how in order if (index + round_) % 2 == 0 else order[::-1]:
                results[name].append(await how(http, FIVE_SENTENCES.format(n=4711)))

    await asyncio.gather(*(client(index) for index in range(clients)))
    return results


async def _dedup_hits(http: _Http, count: int) -> dict:
    text = FIVE_SENTENCES.format(n=1234)
    payload = {"text": text, "engine": "piper", "format": "mp3", "stream": True}
    status, body, _ = await http.request("POST", "/v1/tts", payload)
    await http.request("GET", urlsplit(json.loads(body)["audio_stream_url"]).path)  # made once, to its end
    await _until_succeeded(http, json.loads(body)["id"])
    from_post, from_get = [], []
    for _ in range(count):
        started = time.perf_counter()
        status, body, _ = await http.request("POST", "/v1/tts", payload)
        job = json.loads(body)
        assert job["cache_hit"], job
        get_started = time.perf_counter()
        status, _, first = await http.request("GET", urlsplit(job["audio_stream_url"]).path)
        assert status == 200 and first is not None
        from_post.append(first - started)
        from_get.append(first - get_started)
    return {"from_post": from_post, "from_get": from_get}


def _summary(results: list[tuple[float, float, float]]) -> dict:
    firsts, lasts, pickups = [r[0] for r in results], [r[1] for r in results], [r[2] for r in results]
    return {
        "pickup_p50": percentile(pickups, 50),
        "n": len(results),
        "first_p50": percentile(firsts, 50),
        "first_p99": percentile(firsts, 99),
        "last_p50": percentile(lasts, 50),
        "last_p99": percentile(lasts, 99),
    }


async def _run(url: str, key: str, levels: tuple[int, ...], samples: int) -> dict:
    http = _Http(url, key)
    for _ in range(3):  # the first requests pay imports and connections
        await _streamed(http, FIVE_SENTENCES.format(n=4711))
    result: dict = {"levels": {}}
    for clients in levels:
        runs = await _concurrent(http, clients, max(1, samples // clients))
        result["levels"][clients] = {name: _summary(values) for name, values in runs.items()}
    hits = await _dedup_hits(http, max(20, samples))
    result["dedup"] = {name: (percentile(values, 50), percentile(values, 99)) for name, values in hits.items()}
    return result


def run(url: str, key: str, levels: tuple[int, ...] = (1, 8, 32), samples: int = 32) -> dict:
    return asyncio.run(_run(url, key, levels, samples))


def run_with_stack(levels: tuple[int, ...] = (1, 8, 32), samples: int = 32) -> dict:
    """A throwaway stack whose worker loads piper at boot (as deployments do)."""
    from harness.stack import Stack

    with tempfile.TemporaryDirectory(prefix="mynah-bench-stream-") as workdir:
        stack = Stack(
            Path(workdir),
            web_workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
            extra_env={
                "ENGINES_PRELOAD": "piper",
                "LOG_LEVEL": "WARNING",
                "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
                "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
                "TENANT_MAX_ACTIVE_JOBS": "10000000",
            },
        ).start()
        try:
            result = run(stack.base_url, stack.api_key, levels, samples)
        finally:
            stack.stop()
    result["worker"] = f"1 worker process x {stack.worker_threads} threads"
    return result


def rows(result: dict) -> list[tuple[str, str]]:
    out = []
    for clients, level in result["levels"].items():
        for how in ("streamed", "polled"):
            s = level[how]
            label = f"speech {how} (piper, 5 sentences, mp3), {clients} clients: first byte p50 / p99; last byte p50 / p99"
            value = (
                f"{ms(s['first_p50'])} / {ms(s['first_p99'])}; {ms(s['last_p50'])} / {ms(s['last_p99'])} "
                f"(n={s['n']}; pickup p50 {ms(s['pickup_p50'])})"
            )
            out.append((label, value))
    post, get = result["dedup"]["from_post"], result["dedup"]["from_get"]
    out.append(
        (
            "speech stream, dedup hit: first byte p50 / p99 from the POST (from the GET)",
            f"{ms(post[0])} / {ms(post[1])} ({ms(get[0])} / {ms(get[1])})",
        )
    )
    return out


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--samples", type=int, default=32, help="jobs per level (at least one per client)")
    args = parser.parse_args()
    levels = tuple(int(level) for level in args.levels.split(","))
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    result = run(args.url, args.key, levels, args.samples) if args.key else run_with_stack(levels, args.samples)
    for label, value in rows(result):
        print(f"{label}: {value}")


if __name__ == "__main__":
    main()
