"""Fair share: tenant A bursts N jobs, then tenant B submits one.

    python bench/fairness.py --url URL --key KEY_A --other-key KEY_B -n 800
Prints how long B's job waited to start and how many of A's jobs started
while it waited (the "slots" it was behind), which the per-tenant in-flight
limit (TENANT_MAX_IN_FLIGHT) bounds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, session_for, submit_many, ts, wait_all_done


def run(url: str, key: str, other_key: str, burst: int, engine: str = "espeak") -> dict:
    started = time.perf_counter()
    burst_ids = submit_many(url, key, [{"text": f"Burst job number {i}.", "engine": engine, "cache": False} for i in range(burst)])
    submit_s = time.perf_counter() - started
    other = (
        session_for(other_key)
        .post(f"{url}/v1/tts", json={"text": "The other tenant.", "engine": engine, "cache": False}, timeout=30)
        .json()
    )
    other_jobs = wait_all_done(url, other_key)
    burst_jobs = wait_all_done(url, key)
    mine = next(job for job in other_jobs if job["id"] == other["id"])
    submitted_at, started_at = ts(mine["created_at"]), ts(mine["started_at"])
    ahead = [job for job in burst_jobs if job["started_at"] and submitted_at <= ts(job["started_at"]) < started_at]
    last_burst_start = max(ts(job["started_at"]) for job in burst_jobs if job["started_at"])
    return {
        "burst": len(burst_ids),
        "submit_s": submit_s,
        "wait_s": started_at - submitted_at,
        "slots_behind": len(ahead),
        "burst_drain_s": last_burst_start - submitted_at,
    }


def describe(result: dict) -> str:
    return (
        f"tenant B's job after a burst of {result['burst']}: started after {result['wait_s'] * 1000:.0f} ms, "
        f"behind {result['slots_behind']} of A's jobs (A's burst needed {result['burst_drain_s']:.1f} s more to start)"
    )


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--other-key", required=True, help="API key of a second tenant")
    parser.add_argument("-n", type=int, default=800)
    args = parser.parse_args()
    print(describe(run(args.url, args.key, args.other_key, args.n)))


if __name__ == "__main__":
    main()
