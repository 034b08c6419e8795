"""Operations at scale, in-process on a throwaway database: /metrics scrape
time and dashboard data time with many jobs, purge_expired throughput.

    python bench/operations.py [--jobs 20000] [--expired 2000] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup(workdir: Path, postgres: bool) -> tuple[object | None, subprocess.Popen]:
    from core.redis_server import free_port, redis_server_argv, wait_for_redis

    cluster = None
    redis_port = free_port()  # queue depth is part of every scrape
    redis = subprocess.Popen(redis_server_argv(port=redis_port, data_dir=workdir / "redis", persistent=False), stdout=subprocess.DEVNULL)
    wait_for_redis("127.0.0.1", redis_port, process=redis)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "MYNAH_VAR_DIR": str(workdir),
            "LOG_LEVEL": "WARNING",
            "MEDIA_ROOT": str(workdir / "media"),
            "SECRET_KEY": "bench",
        }
    )
    if postgres:
        from harness.postgres import PostgresCluster

        cluster = PostgresCluster().init().start()
        cluster.create_database("bench")
        os.environ["DATABASE_URL"] = cluster.url("bench")
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return cluster, redis


def _seed(jobs: int) -> None:
    from django.utils import timezone

    from jobs.models import Job
    from tenants.models import Tenant

    tenants = [Tenant.objects.create(slug=f"tenant-{index}") for index in range(20)]
    now = timezone.now()
    rows = []
    for _index in range(jobs):
        created = now - timedelta(seconds=random.uniform(0, 2 * 3600))
        status = random.choice(["succeeded"] * 8 + ["failed", "queued", "running"])
        started = created + timedelta(seconds=random.uniform(0.01, 3))
        finished = started + timedelta(seconds=random.uniform(0.1, 20)) if status in ("succeeded", "failed") else None
        rows.append(
            Job(
                tenant=random.choice(tenants),
                kind=random.choice(["tts", "tts", "talking_head"]),
                engine="piper",
                status=status,
                created_at=created,
                started_at=started if status != "queued" else None,
                finished_at=finished,
                error_code="engine_error" if status == "failed" else "",
                cache_hit=random.random() < 0.1,
                result_duration_s=random.uniform(1, 10) if status == "succeeded" else None,
            )
        )
    Job.objects.bulk_create(rows, batch_size=2000)


def _timed(function, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _expired_with_files(count: int) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from jobs.models import Job
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="tenant-0")
    past = timezone.now() - timedelta(days=1)
    for index in range(count):
        job = Job.objects.create(
            tenant=tenant, kind="tts", engine="piper", status="succeeded", result_expires_at=past, dedup_key=f"{index:064x}"
        )
        key = default_storage.save(f"tenants/{tenant.id}/jobs/{job.id}/output-1.wav", ContentFile(b"\0" * 4096))
        Job.objects.filter(id=job.id).update(result_key=key)


def run(jobs: int = 20_000, expired: int = 2_000, postgres: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="mynah-bench-ops-") as workdir:
        cluster, redis = _setup(Path(workdir), postgres)
        try:
            from django.utils import timezone

            from core.metrics import exposition
            from jobs.retention import jobs_purge
            from jobs.selectors import dashboard_stats

            _seed(jobs)
            scrape = _timed(lambda: exposition())
            dashboard = _timed(lambda: dashboard_stats(now=timezone.now(), window_minutes=60))
            _expired_with_files(expired)
            start = time.perf_counter()
            report = jobs_purge(now=timezone.now(), orphans=False)
            purge_s = time.perf_counter() - start
            start = time.perf_counter()
            jobs_purge(now=timezone.now())  # nothing left to expire; sweeps the storage tree
            sweep_s = time.perf_counter() - start
            return {
                "database": "postgres" if postgres else "sqlite",
                "jobs": jobs,
                "scrape_s": scrape,
                "dashboard_s": dashboard,
                "expired": report.jobs_expired,
                "purge_s": purge_s,
                "purge_per_s": report.jobs_expired / purge_s,
                "sweep_s": sweep_s,
            }
        finally:
            redis.terminate()
            if cluster is not None:
                from django.db import connections

                connections.close_all()
                cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--expired", type=int, default=2_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    result = run(args.jobs, args.expired, args.postgres)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['database']}, {result['jobs']} jobs: /metrics scrape {result['scrape_s'] * 1000:.0f} ms, "
        f"dashboard data {result['dashboard_s'] * 1000:.0f} ms; purge_expired {result['expired']} expired jobs with files in "
        f"{result['purge_s']:.2f} s ({result['purge_per_s']:.0f} jobs/s); re-run with the orphan sweep {result['sweep_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
