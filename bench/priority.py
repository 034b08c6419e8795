"""High priority behind a backlog: N normal jobs, then one high-priority job.

    python bench/priority.py --url URL --key KEY -n 500
(the tenant must be allowed high priority). Prints how long the high job
waited to start and how many normal jobs started while it waited.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, session_for, submit_many, ts, wait_all_done


def run(url: str, key: str, backlog: int, engine: str = "espeak") -> dict:
    submit_many(url, key, [{"text": f"Backlog job number {i}.", "engine": engine, "cache": False} for i in range(backlog)])
    time.sleep(0.5)  # the workers are busy with the backlog now
    high = session_for(key).post(
        f"{url}/v1/tts", json={"text": "Urgent.", "engine": engine, "priority": "high", "cache": False}, timeout=30
    )
    high.raise_for_status()
    jobs = wait_all_done(url, key)
    mine = next(job for job in jobs if job["id"] == high.json()["id"])
    submitted_at, started_at = ts(mine["created_at"]), ts(mine["started_at"])
    normal = [job for job in jobs if job["priority"] == "normal" and job["started_at"]]
    ahead = [job for job in normal if submitted_at <= ts(job["started_at"]) < started_at]
    waiting = [job for job in normal if ts(job["started_at"]) >= submitted_at]
    return {"backlog": backlog, "wait_s": started_at - submitted_at, "started_ahead": len(ahead), "still_waiting": len(waiting)}


def describe(result: dict) -> str:
    return (
        f"high-priority job behind {result['backlog']} normal jobs ({result['still_waiting']} not yet started): "
        f"started after {result['wait_s'] * 1000:.0f} ms, {result['started_ahead']} normal jobs started first"
    )


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("-n", type=int, default=500)
    args = parser.parse_args()
    print(describe(run(args.url, args.key, args.n)))


if __name__ == "__main__":
    main()
