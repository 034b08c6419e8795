"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections,
each sending its next request as soon as the previous answer is read.

Plain asyncio sockets rather than a client library, so the generator costs
little CPU next to the server it measures on the same 2 cores (one request
and one parse per answer, no pools, no redirects). It reads answers with
Content-Length or chunked bodies, which is all the API sends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common import percentile

Request = tuple[str, str, bytes | None]  # method, path, JSON body


@dataclass
class LoadResult:
    connections: int
    wall_s: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)  # kept only when asked

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        return self.count - self.ok

    @property
    def per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def p50_s(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99_s(self) -> float:
        return percentile(self.latencies, 99)

    def summary(self) -> dict:
        return {
            "connections": self.connections,
            "requests": self.count,
            "per_s": self.per_s,
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
            "non_2xx": self.non_2xx,
            "statuses": dict(self.statuses),
        }


def _encode(host: str, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive", *(f"{k}: {v}" for k, v in headers.items())]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(part[:-2] for part in parts)
    else:
        body = await reader.read()
    return status, body, headers.get("connection", "").lower() != "close"


def run_load(
    url: str,
    make_request: Callable[[int], Request],
    *,
    connections: int,
    total: int | None = None,
    duration_s: float | None = None,
    headers: dict[str, str] | None = None,
    keep_bodies: bool = False,
    timeout_s: float = 60.0,
) -> LoadResult:
    """Send ``make_request(i)`` for i = 0, 1, ... over ``connections``
    keep-alive connections, until ``total`` requests or ``duration_s``."""
    assert total is not None or duration_s is not None
    return asyncio.run(_run(url, make_request, connections, total, duration_s, headers or {}, keep_bodies, timeout_s))


async def _run(url, make_request, connections, total, duration_s, headers, keep_bodies, timeout_s) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult(connections=connections, wall_s=0.0)
    counter = iter(range(total if total is not None else 10**12))
    started = time.perf_counter()
    deadline = started + duration_s if duration_s is not None else None

    async def connection() -> None:
        reader = writer = None
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            index = next(counter, None)
            if index is None:
                break
            method, path, body = make_request(index)
            payload = _encode(f"{host}:{port}", method, path, body, headers)
            sent = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(payload)
                status, answer, keep = await asyncio.wait_for(_read_answer(reader), timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                status, answer, keep = 0, b"", False  # 0: the connection failed
            result.latencies.append(time.perf_counter() - sent)
            result.statuses[status] += 1
            if keep_bodies:
                result.bodies.append(answer)
            if not keep and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.wall_s = time.perf_counter() - started
    return result
