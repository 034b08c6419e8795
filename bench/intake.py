"""Intake: how fast the API accepts jobs, as a ratio of the same server's
``GET /healthz`` measured in the same run (the machine is shared and noisy,
so ratios are what compare across runs).

    python bench/intake.py                       # SQLite (make run's shape), then Postgres
    python bench/intake.py --database sqlite --seconds 5 --burst 2000

Per database, on a throwaway stack (redis, 2 web processes, a worker of 2
threads, tenant limits above the load), at 16 and 64 keep-alive connections:
``/healthz``, authenticated ``GET /v1/usage``, ``POST /v1/tts`` (unique
texts, espeak) and ``GET /v1/jobs/{id}``: rate, p50, p99, non-2xx, and the
ratio to ``/healthz``. Then the RSS of each web process; a burst of
``--burst`` submits from 64 clients (every one accepted? every job
succeeded?) and the workers' drain rate; and, on Postgres, a brand-new
tenant's first burst while its first jobs finish (the case that deadlocked).
Prints numbers; asserts nothing. ``--json`` prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from common import TENANT_LIMITS_LIFTED, ms  # noqa: E402
from loadgen import LoadResult, run_load  # noqa: E402

UNLIMITED = {**TENANT_LIMITS_LIFTED, "LOG_LEVEL": "WARNING"}
CONNECTIONS = (16, 64)


def _submit(tag: str):
    def make(index: int):
        body = json.dumps({"text": f"Intake {tag} sentence number {index}.", "engine": "espeak"}).encode()
        return "POST", "/v1/tts", body

    return make


def _poll(job_ids: list[str]):
    return lambda index: ("GET", f"/v1/jobs/{job_ids[index % len(job_ids)]}", None)


def _rss_mb(stack) -> list[float]:
    import psutil

    return [round(psutil.Process(pid).memory_info().rss / 2**20, 1) for pid in stack.child_pids("web")]


def _job_counts(stack, tenant: str) -> dict:
    """Statuses of the tenant's jobs and the span from its first start to its last finish, from the database."""
    code = (
        "import json; from django.db.models import Count, Min, Max; from jobs.models import Job; "
        f"q = Job.objects.filter(tenant__slug={tenant!r}); "
        "s = dict(q.values_list('status').annotate(n=Count('id')).order_by()); "
        "a = q.filter(cache_hit=False).aggregate(first=Min('started_at'), last=Max('finished_at'), n=Count('id')); "
        "print(json.dumps({'statuses': s, 'ran': a['n'], "
        "'span_s': (a['last'] - a['first']).total_seconds() if a['first'] and a['last'] else None}))"
    )
    return json.loads(stack.manage("shell", "-c", code).strip().splitlines()[-1])


def _wait_drained(stack, tenant: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = _job_counts(stack, tenant)
        if not {"queued", "running"} & set(counts["statuses"]) or time.monotonic() > deadline:
            return counts
        time.sleep(2)


def _row(label: str, result: LoadResult, healthz: LoadResult | None = None) -> dict:
    row = {"request": label, **result.summary()}
    if healthz is not None:
        row["ratio_to_healthz"] = result.per_s / healthz.per_s if healthz.per_s else 0.0
    return row


def _print_row(database: str, row: dict) -> None:
    ratio = f", {row['ratio_to_healthz']:.2f} x /healthz" if "ratio_to_healthz" in row else ""
    print(
        f"[{database}] {row['request']:<24} {row['connections']:>3} conn: {row['per_s']:7.0f}/s{ratio}, "
        f"p50 {ms(row['p50_s'])}, p99 {ms(row['p99_s'])}, non-2xx {row['non_2xx']}",
        file=sys.stderr,
    )


def measure(stack, database: str, seconds: float) -> list[dict]:
    url, headers = stack.base_url, stack.headers()
    run_load(url, lambda i: ("GET", "/healthz", None), connections=16, total=500)  # warm up every process
    run_load(url, _submit("warmup"), connections=16, total=200, headers=headers)
    rows: list[dict] = []
    job_ids: list[str] = []
    for connections in CONNECTIONS:
        healthz = run_load(url, lambda i: ("GET", "/healthz", None), connections=connections, duration_s=seconds)
        usage = run_load(url, lambda i: ("GET", "/v1/usage", None), connections=connections, duration_s=seconds, headers=headers)
        submit = run_load(url, _submit(f"c{connections}"), connections=connections, duration_s=seconds, headers=headers, keep_bodies=True)
        job_ids += [json.loads(body)["id"] for body in submit.bodies if body.startswith(b"{") and b'"id"' in body]
        reads = run_load(url, _poll(job_ids[-2000:]), connections=connections, duration_s=seconds, headers=headers)
        for label, result in (("GET /healthz", healthz), ("GET /v1/usage", usage), ("POST /v1/tts", submit), ("GET /v1/jobs/{id}", reads)):
            row = _row(label, result, None if result is healthz else healthz)
            rows.append(row)
            _print_row(database, row)
    return rows


def burst(stack, database: str, tenant: str, key: str, total: int, drain_timeout_s: float) -> dict:
    started = time.monotonic()
    result = run_load(stack.base_url, _submit(f"burst-{tenant}"), connections=64, total=total, headers=stack.headers(key))
    counts = _wait_drained(stack, tenant, drain_timeout_s)
    row = {
        "tenant": tenant,
        "submits": total,
        "accepted": result.ok,
        "non_2xx": result.non_2xx,
        "statuses": dict(result.statuses),
        "accept_per_s": result.per_s,
        "submit_p99_s": result.p99_s,
        "jobs": counts["statuses"],
        "drain_per_s": counts["ran"] / counts["span_s"] if counts["span_s"] else None,
        "wall_s": time.monotonic() - started,
    }
    print(f"[{database}] burst {row}", file=sys.stderr)
    return row


def run_database(database: str, *, seconds: float, burst_size: int, fresh_burst: int, workdir: Path) -> dict:
    from harness.stack import Stack

    pg = None
    if database == "postgres":
        from harness.postgres import PostgresCluster

        pg = PostgresCluster().init().start()
        os.environ["MYNAH_TEST_POSTGRES_URL"] = pg.url("postgres")
    else:
        os.environ.pop("MYNAH_TEST_POSTGRES_URL", None)
    stack = Stack(workdir / database, web_workers=int(os.environ.get("WEB_CONCURRENCY", "2")), extra_env=UNLIMITED)
    (workdir / database).mkdir()
    try:
        stack.start()
        out: dict = {"database": database, "rows": measure(stack, database, seconds), "web_rss_mb": _rss_mb(stack)}
        print(f"[{database}] web process RSS: {out['web_rss_mb']} MB", file=sys.stderr)
        _wait_drained(stack, "acme", 900)
        out["burst"] = burst(stack, database, "globex", stack.other_api_key, burst_size, drain_timeout_s=max(900, burst_size / 5))
        if fresh_burst:
            # A brand-new tenant: its first jobs finish (a worker inserts its
            # first usage row) while the rest of its burst is still arriving.
            stack.manage("create_tenant", "fresh")
            key = stack.manage("create_api_key", "fresh", "--name", "bench").strip().splitlines()[-1]
            out["fresh_burst"] = burst(stack, database, "fresh", key, fresh_burst, drain_timeout_s=900)
        return out
    finally:
        stack.stop()
        if pg is not None:
            pg.remove()
            os.environ.pop("MYNAH_TEST_POSTGRES_URL", None)


def run(
    *, databases: tuple[str, ...] = ("sqlite", "postgres"), seconds: float = 5, burst_size: int = 10_000, fresh_burst: int = 1000
) -> dict:
    import django

    django.setup()
    with tempfile.TemporaryDirectory(prefix="mynah-intake-") as tmp:
        return {
            database: run_database(
                database,
                seconds=seconds,
                burst_size=burst_size,
                fresh_burst=fresh_burst if database == "postgres" else 0,
                workdir=Path(tmp),
            )
            for database in databases
        }


def rows(results: dict) -> list[tuple[str, str]]:
    """Rows for bench/results/latest.md."""
    table: list[tuple[str, str]] = []
    for database, out in results.items():
        for row in out["rows"]:
            ratio = f" = {row['ratio_to_healthz']:.2f} x /healthz" if "ratio_to_healthz" in row else ""
            table.append(
                (
                    f"intake ({database}) {row['request']}, {row['connections']} conn: /s (p50 / p99, non-2xx)",
                    f"{row['per_s']:.0f}{ratio} ({ms(row['p50_s'])} / {ms(row['p99_s'])}, {row['non_2xx']})",
                )
            )
        table.append((f"intake ({database}): RSS per web process", ", ".join(f"{mb:.0f} MB" for mb in out["web_rss_mb"])))
        for name in ("burst", "fresh_burst"):
            if name in out:
                b = out[name]
                drain = f"{b['drain_per_s']:.1f} jobs/s" if b["drain_per_s"] else "n/a"
                table.append(
                    (
                        f"intake ({database}) {'new tenant ' if name == 'fresh_burst' else ''}burst of {b['submits']} from 64 clients",
                        f"{b['accepted']} accepted ({b['accept_per_s']:.0f}/s, {b['non_2xx']} non-2xx), jobs {b['jobs']}, drained {drain}",
                    )
                )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured request kind and connection count")
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--fresh-burst", type=int, default=1000, help="a new tenant's first burst (Postgres)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    results = run(databases=databases, seconds=args.seconds, burst_size=args.burst, fresh_burst=args.fresh_burst)
    for name, value in rows(results):
        print(f"{name}: {value}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
