"""Scale-out numbers for docs/scaling.md, measured through a real Traefik
(platform/run-cluster.sh): submit throughput with 1 vs 2 web instances (one
gunicorn process each, no workers, so the web tier alone is measured), and
with one replica of each worker pool, jobs/s per speech worker for each
built-in speech engine plus what each job costs Redis and the database.

    .venv/bin/python bench/scaling.py [--seconds 10] [--clients 16] [--sqlite]

Postgres (the production database) is the default: a throwaway cluster as
in the tests. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# The tenant limits would cap a single demo key long before the web tier.
UNLIMITED = {
    "TENANT_RATE_LIMIT_PER_MINUTE": "100000000",
    "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "100000000",
    "TENANT_MAX_ACTIVE_JOBS": "100000000",
    "WEB_CONCURRENCY": "1",
}
SPEECH_JOBS = {  # engine: (jobs, text); about one sentence of customer text each
    "espeak": (300, "Your order {i} has shipped and will arrive on Thursday between nine and noon."),
    "piper": (60, "Your order {i} has shipped and will arrive on Thursday between nine and noon."),
}


def _load(args: tuple[str, str, float, int, int]) -> tuple[int, int, list[float]]:
    """One load process: ``threads`` clients submitting for ``seconds``."""
    import threading

    import requests

    url, key, seconds, threads, offset = args
    accepted, failed, latencies = [0], [0], []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = {"text": f"Scaling bench {offset}-{index}-{n}.", "engine": "espeak", "cache": False}
            started = time.perf_counter()
            try:
                response = session.post(f"{url}/v1/tts", json=body, timeout=30)
                ok = response.status_code == 202
            except requests.RequestException:
                ok = False
            with lock:
                latencies.append(time.perf_counter() - started)
                if ok:
                    accepted[0] += 1
                else:
                    failed[0] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return accepted[0], failed[0], latencies


def _cpu_s(match) -> float:
    """CPU seconds (user + system) of the live processes ``match(pid, pgrp, comm)`` selects."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        if match(int(stat.parent.name), int(fields[2]), comm):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _in_groups(pgids: set[int]):
    return lambda pid, pgrp, comm: pgrp in pgids


def cpu_per_submit(cluster, url: str, key: str, seconds: float, clients: int) -> dict:
    """Submit throughput plus the CPU each tier spent per accepted submit."""
    groups = {"web": {cluster.pid(name) for name in cluster.web_names}, "traefik": {cluster.pid("traefik")}}
    tiers = {
        **{tier: _in_groups(pgids) for tier, pgids in groups.items()},
        "postgres": lambda pid, pgrp, comm: comm.startswith("postgres"),
        "redis": lambda pid, pgrp, comm: comm.startswith("redis-server"),
    }
    before = {tier: _cpu_s(match) for tier, match in tiers.items()}
    result = submit_throughput(url, key, seconds, clients)
    accepted = result["per_s"] * result["elapsed_s"]
    result["cpu_ms_per_submit"] = {tier: (_cpu_s(match) - before[tier]) * 1000 / accepted for tier, match in tiers.items()}
    return result


def submit_throughput(url: str, key: str, seconds: float, clients: int, processes: int = 4) -> dict:
    """Clients spread over a few processes: one Python process cannot load
    a web tier that answers in a few milliseconds."""
    from bench.common import percentile

    per = max(1, clients // processes)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        started = time.monotonic()
        results = pool.map(_load, [(url, key, seconds, per, p) for p in range(processes)])
        elapsed = time.monotonic() - started
    accepted = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    return {
        "per_s": accepted / elapsed,
        "elapsed_s": elapsed,
        "failed": failed,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
    }


def _redis_cost(client) -> tuple[int, float]:
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    return sum(v["calls"] for v in stats.values()), cpu["used_cpu_sys"] + cpu["used_cpu_user"]


def _db_cost(database_url: str) -> int | None:
    if not database_url.startswith("postgres"):
        return None
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def worker_throughput(cluster, engine: str, jobs: int, text: str) -> dict:
    """Submit a batch, then time the pool draining it (submit time excluded)."""
    import redis
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {cluster.api_key}"
    redis_client = redis.Redis.from_url(cluster.env["REDIS_URL"])
    calls_before, cpu_before = _redis_cost(redis_client)
    xact_before = _db_cost(cluster.env["DATABASE_URL"])
    ids = []
    for i in range(jobs):
        response = session.post(f"{cluster.url}/v1/tts", json={"text": text.format(i=i), "engine": engine, "cache": False}, timeout=30)
        response.raise_for_status()
        ids.append(response.json()["id"])
    # One cheap poll per half second (not one per job): the costs below are the jobs'.
    while session.get(f"{cluster.url}/v1/usage", timeout=30).json()["active_jobs"]:
        time.sleep(0.5)
    from datetime import datetime

    from harness.stack import list_all_jobs

    jobs_seen = [job for job_id, job in list_all_jobs(session, cluster.url, {}).items() if job_id in set(ids)]
    parse = lambda value: datetime.fromisoformat(value)  # noqa: E731
    span = (max(parse(j["finished_at"]) for j in jobs_seen) - min(parse(j["started_at"]) for j in jobs_seen)).total_seconds()
    calls_after, cpu_after = _redis_cost(redis_client)
    xact_after = _db_cost(cluster.env["DATABASE_URL"])
    return {
        "jobs_per_s": jobs / span,
        "span_s": span,
        # Includes the bench's submits and its few polls: an upper bound per job.
        "redis_calls_per_job": (calls_after - calls_before) / jobs,
        "redis_cpu_ms_per_job": (cpu_after - cpu_before) * 1000 / jobs,
        "db_commits_per_job": (xact_after - xact_before) / jobs if xact_before is not None else None,
    }


def pgbench_tps(database_url: str, seconds: int = 10) -> float | None:
    """What this machine's Postgres does with small write transactions
    (pgbench's simple-update), for the headroom estimate."""
    if not database_url.startswith("postgres"):
        return None
    from harness.postgres import _bin_dir

    pgbench = str(_bin_dir() / "pgbench")
    subprocess.run([pgbench, "-i", "-q", "-s", "2", database_url], check=True, capture_output=True)
    out = subprocess.run(
        [pgbench, "-N", "-c", "8", "-j", "2", "-T", str(seconds), database_url], check=True, capture_output=True, text=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("tps"))
    return float(line.split("=")[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of a throwaway Postgres")
    args = parser.parse_args()
    results = run(seconds=args.seconds, clients=args.clients, postgres=not args.sqlite)
    print(json.dumps(results, indent=2))


def run(*, seconds: float = 10, clients: int = 16, postgres: bool = True) -> dict:
    import django

    django.setup()
    from harness.cluster import Cluster

    pg = None
    results: dict = {"database": "postgres" if postgres else "sqlite", "clients": clients}
    with tempfile.TemporaryDirectory(prefix="mynah-scaling-") as tmp:
        workdir = Path(tmp)
        if postgres:
            from harness.postgres import PostgresCluster

            pg = PostgresCluster().init().start()
        try:

            def database(name: str) -> str | None:
                if pg is None:
                    return None
                pg.create_database(name)
                return pg.url(name)

            for instances in (1, 2):
                path = workdir / f"web{instances}"
                path.mkdir()
                cluster = Cluster(
                    path, web_instances=instances, worker_replicas=0, extra_env=UNLIMITED, database_url=database(f"web{instances}")
                )
                try:
                    cluster.start()
                    submit_throughput(cluster.url, cluster.api_key, 2, clients)  # warm up connections and caches
                    results[f"web_{instances}"] = cpu_per_submit(cluster, cluster.url, cluster.api_key, seconds, clients)
                    print(f"web instances {instances}: {results[f'web_{instances}']}", file=sys.stderr)
                finally:
                    cluster.stop()
            results["scaling_factor"] = results["web_2"]["per_s"] / results["web_1"]["per_s"]
            path = workdir / "workers"
            path.mkdir()
            cluster = Cluster(path, web_instances=1, worker_replicas=1, extra_env=UNLIMITED, database_url=database("workers"))
            try:
                cluster.start()
                for engine, (jobs, text) in SPEECH_JOBS.items():
                    worker_throughput(cluster, engine, 8, "Warm up {i}.")  # load the engine before timing it
                    results[f"worker_{engine}"] = worker_throughput(cluster, engine, jobs, text)
                    print(f"worker {engine}: {results[f'worker_{engine}']}", file=sys.stderr)
            finally:
                cluster.stop()
            if pg is not None:
                results["pgbench_simple_update_tps"] = pgbench_tps(database("pgbench"))
        finally:
            if pg is not None:
                pg.stop()
                pg.remove()
    return results


if __name__ == "__main__":
    main()
