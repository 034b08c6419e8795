"""OpenAI-compatible speech: time to the first and the last audio byte of
``POST /v1/audio/speech``.

    python bench/openai_speech.py                       # its own stack (piper loaded at worker boot)
    python bench/openai_speech.py --url URL --key KEY   # a running deployment

``model: tts-1`` (piper), mp3, the five-sentence text of bench/speech_stream.py
(about 8 s of speech), each request with its own order number so none is a
dedup hit; at 1 and 8 concurrent clients. Times run from the start of the
POST (one request: submit, relay, audio). Then a dedup hit: an earlier
request again, its first byte. Prints p50 and p99; it asserts nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, ms, percentile
from speech_stream import FIVE_SENTENCES, _Http

_numbers = itertools.count(10_000)


async def _speech(http: _Http, text: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    status, audio, first = await http.request("POST", "/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": text})
    assert status == 200 and first is not None, (status, audio[:200])
    return first - started, time.perf_counter() - started, len(audio)


async def _concurrent(http: _Http, clients: int, rounds: int) -> list[tuple[float, float, int]]:
    results: list[tuple[float, float, int]] = []

    async def client() -> None:
        for _ in range(rounds):
            results.append(await _speech(http, FIVE_SENTENCES.format(n=next(_numbers))))

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


async def _run(url: str, key: str, levels: tuple[int, ...], samples: int) -> dict:
    http = _Http(url, key)
    for _ in range(3):  # the first requests pay imports and connections
        await _speech(http, FIVE_SENTENCES.format(n=next(_numbers)))
    result: dict = {"levels": {}}
    for clients in levels:
        runs = await _concurrent(http, clients, max(1, samples // clients))
        firsts, lasts = [r[0] for r in runs], [r[1] for r in runs]
        result["levels"][clients] = {
            "n": len(runs),
            "first": (percentile(firsts, 50), percentile(firsts, 99)),
            "last": (percentile(lasts, 50), percentile(lasts, 99)),
        }
    text = FIVE_SENTENCES.format(n=1234)
    await _speech(http, text)  # made once
    await asyncio.sleep(1.0)  # stored and marked succeeded: the repeats are cache hits
    hits = [(await _speech(http, text))[0] for _ in range(max(20, samples))]
    result["dedup_first"] = (percentile(hits, 50), percentile(hits, 99))
    return result


def run(url: str, key: str, levels: tuple[int, ...] = (1, 8), samples: int = 16) -> dict:
    return asyncio.run(_run(url, key, levels, samples))


def run_with_stack(levels: tuple[int, ...] = (1, 8), samples: int = 16) -> dict:
    from harness.stack import Stack

    with tempfile.TemporaryDirectory(prefix="mynah-bench-openai-") as workdir:
        stack = Stack(
            Path(workdir),
            web_workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
            extra_env={
                "ENGINES_PRELOAD": "piper",
                "LOG_LEVEL": "WARNING",
                "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
                "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
            },
        ).start()
        try:
            return run(stack.base_url, stack.api_key, levels, samples)
        finally:
            stack.stop()


def describe(result: dict) -> str:
    lines = ["POST /v1/audio/speech, tts-1 (piper), mp3, five sentences (~8 s of speech); from the start of the POST"]
    for clients, level in result["levels"].items():
        (f50, f99), (l50, l99) = level["first"], level["last"]
        lines.append(
            f"  {clients:2} clients ({level['n']} requests): first byte p50 {ms(f50)} p99 {ms(f99)}; last byte p50 {ms(l50)} p99 {ms(l99)}"
        )
    d50, d99 = result["dedup_first"]
    lines.append(f"  dedup hit: first byte p50 {ms(d50)} p99 {ms(d99)}")
    return "\n".join(lines)


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--samples", type=int, default=16, help="requests per concurrency level")
    args = parser.parse_args()
    result = run(args.url, args.key, samples=args.samples) if args.key else run_with_stack(samples=args.samples)
    print(describe(result))


if __name__ == "__main__":
    main()
