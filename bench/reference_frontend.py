"""Mynah's intake next to the bare queue front-end it replaces, in one run.

    make bench-reference            # builds .venv-reference, then runs this
    python bench/reference_frontend.py --reference-python .venv-reference/bin/python [--seconds 4] [--rounds 3]

The reference (bench/reference/app.py: FastAPI + Celery on Redis, no auth and
no database) runs under uvicorn with 2 worker processes, as Mynah runs 2 web
processes. Mynah's worker runs during Mynah's rounds, as in bench/intake.py,
and is paused (SIGSTOP) during the reference's: the reference has no worker,
and Mynah's backlog must not slow it. Both get the
same load generator: ``GET /healthz``, ``POST /v1/tts`` (unique texts) and
``GET /v1/jobs/{id}`` (the jobs just submitted) at 64 and 16 keep-alive connections, rounds interleaved between the two servers so
the machine's noise falls on both. Prints per server the medians of the
rounds: rates, p99, the submit/``/healthz`` ratio, and Mynah's submit rate as
a fraction of the reference's. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from common import TENANT_LIMITS_LIFTED, ms  # noqa: E402
from loadgen import run_load  # noqa: E402

from core.redis_server import free_port, redis_server_argv, wait_for_redis  # noqa: E402


def _submit(tag: str):
    def make(index: int):
        return "POST", "/v1/tts", json.dumps({"text": f"Reference {tag} sentence number {index}.", "engine": "espeak"}).encode()

    return make


def _healthz(index: int):
    return "GET", "/healthz", None


class Reference:
    """The reference app under uvicorn, with its own Redis."""

    def __init__(self, workdir: Path, python: str, workers: int) -> None:
        self.workdir, self.python, self.workers = workdir, python, workers
        self.redis_port, self.port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        redis = subprocess.Popen(
            redis_server_argv(port=self.redis_port, data_dir=self.workdir / "redis", persistent=False), stdout=subprocess.DEVNULL
        )
        self.processes.append(redis)
        wait_for_redis("127.0.0.1", self.redis_port, process=redis)
        argv = [self.python, "-m", "uvicorn", "app:app", "--app-dir", str(ROOT / "bench" / "reference")]
        argv += ["--port", str(self.port), "--workers", str(self.workers), "--no-access-log", "--log-level", "warning"]
        env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0"}
        self.processes.append(subprocess.Popen(argv, env=env))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if run_load(self.base_url, _healthz, connections=1, total=1).ok:
                return
            time.sleep(0.2)
        raise TimeoutError("the reference front-end did not answer within 30 s")

    def headers(self) -> dict[str, str]:
        return {}

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=15)


def _round(server, connections: int, seconds: float, tag: str) -> dict:
    healthz = run_load(server.base_url, _healthz, connections=connections, duration_s=seconds)
    submits = run_load(
        server.base_url, _submit(tag), connections=connections, duration_s=seconds, headers=server.headers(), keep_bodies=True
    )
    job_ids = [json.loads(body)["id"] for body in submits.bodies if body.startswith(b"{") and b'"id"' in body][:2000]
    reads = run_load(
        server.base_url,
        lambda index: ("GET", f"/v1/jobs/{job_ids[index % len(job_ids)]}", None),
        connections=connections,
        duration_s=seconds,
        headers=server.headers(),
    )
    return {
        "healthz": healthz.per_s,
        "submits": submits.per_s,
        "submit_p99_s": submits.p99_s,
        "reads": reads.per_s,
        "read_p99_s": reads.p99_s,
        "non_2xx": healthz.non_2xx + submits.non_2xx + reads.non_2xx,
    }


def _worker_signal(stack, sig: int) -> None:
    """Pause or resume Mynah's worker: the Dramatiq master and its processes."""
    for pid in [stack.supervisor.children["worker"].process.pid, *stack.child_pids("worker")]:
        os.kill(pid, sig)


def _median(rounds: list[dict], field: str) -> float:
    return statistics.median(one[field] for one in rounds)


def run(*, reference_python: str, seconds: float, rounds: int, workers: int) -> dict:
    from harness.stack import Stack

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mynah-reference-") as tmp:
        (Path(tmp) / "mynah").mkdir()
        (Path(tmp) / "reference").mkdir()
        mynah = Stack(Path(tmp) / "mynah", web_workers=workers, extra_env={**TENANT_LIMITS_LIFTED, "LOG_LEVEL": "WARNING"})
        reference = Reference(Path(tmp) / "reference", reference_python, workers)
        servers = {"reference": reference, "mynah": mynah}
        try:
            for server in servers.values():
                server.start()
                run_load(server.base_url, _healthz, connections=16, total=500)
                run_load(server.base_url, _submit("warm"), connections=16, total=300, headers=server.headers())
            for connections in (64, 16):
                measured: dict[str, list[dict]] = {name: [] for name in servers}
                for index in range(rounds):
                    _worker_signal(mynah, signal.SIGSTOP)
                    try:
                        measured["reference"].append(_round(reference, connections, seconds, f"{connections}-{index}"))
                    finally:
                        _worker_signal(mynah, signal.SIGCONT)
                    measured["mynah"].append(_round(mynah, connections, seconds, f"{connections}-{index}"))
                results[connections] = {
                    name: {field: _median(rounds_, field) for field in ("healthz", "submits", "submit_p99_s", "reads", "read_p99_s")}
                    | {"non_2xx": sum(one["non_2xx"] for one in rounds_)}
                    for name, rounds_ in measured.items()
                }
        finally:
            for server in servers.values():
                server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", default=str(ROOT / ".venv-reference" / "bin" / "python"))
    parser.add_argument("--seconds", type=float, default=4.0, help="per point")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per connection count (medians)")
    parser.add_argument("--workers", type=int, default=2, help="web processes of each server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(reference_python=args.reference_python, seconds=args.seconds, rounds=args.rounds, workers=args.workers)
    for connections, servers in results.items():
        for name, one in servers.items():
            print(
                f"{connections:>3} conn  {name:<9}  /healthz {one['healthz']:6.0f}/s"
                f"  POST /v1/tts {one['submits']:5.0f}/s p99 {ms(one['submit_p99_s']):>8} {one['submits'] / one['healthz']:.2f} x"
                f"  GET /v1/jobs/{{id}} {one['reads']:5.0f}/s p99 {ms(one['read_p99_s']):>8} {one['reads'] / one['healthz']:.2f} x"
                f"  non-2xx {one['non_2xx']}"
            )
        mynah, reference = servers["mynah"], servers["reference"]
        print(
            f"{connections:>3} conn  Mynah / reference: submits {mynah['submits'] / reference['submits']:.2f} x,"
            f" reads {mynah['reads'] / reference['reads']:.2f} x, /healthz {mynah['healthz'] / reference['healthz']:.2f} x"
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
