"""Shared helpers for benchmarks (they print numbers; they never assert)."""

from __future__ import annotations

import argparse
import os
import statistics


def base_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=os.environ.get("MYNAH_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("MYNAH_API_KEY"), help="API key (or MYNAH_API_KEY)")
    return parser


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(q) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
