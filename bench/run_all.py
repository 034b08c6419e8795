"""`make bench`: start a throwaway stack (redis, gunicorn, worker), run every
benchmark against it and write bench/results/latest.md."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import dedup  # noqa: E402
import engine_speed  # noqa: E402
import fairness  # noqa: E402
import intake  # noqa: E402
import pickup  # noqa: E402
import priority  # noqa: E402
import speech_stream  # noqa: E402
import sse  # noqa: E402
import submit  # noqa: E402
import talking_head  # noqa: E402
import voice_similarity  # noqa: E402
import voice_upload_isolation  # noqa: E402
from common import TENANT_LIMITS_LIFTED, ms, wait_all_done  # noqa: E402

from harness.stack import Stack  # noqa: E402


def _operations(database: str) -> dict:
    """bench/operations.py in its own process (it sets up Django on a throwaway database)."""
    import json
    import subprocess

    argv = [sys.executable, str(ROOT / "bench" / "operations.py"), "--json"] + (["--postgres"] if database == "postgres" else [])
    output = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def _scaling() -> dict:
    """bench/scaling.py in its own process (it starts clusters behind Traefik on a throwaway Postgres)."""
    import json
    import subprocess

    output = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scaling.py")], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return json.loads(output)


def main() -> None:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mynah-bench-") as workdir:
        # Benchmarks measure throughput, so the tenants' request and job limits are lifted.
        unlimited = TENANT_LIMITS_LIFTED
        stack = Stack(
            Path(workdir), web_workers=int(os.environ.get("WEB_CONCURRENCY", "2")), extra_env={"LOG_LEVEL": "WARNING", **unlimited}
        )
        stack.start()
        try:
            result = pickup.run(stack.base_url, stack.api_key, 30, "espeak")
            rows.append(("pickup p50 / p95 (idle worker)", f"{ms(result['pickup_p50_s'])} / {ms(result['pickup_p95_s'])}"))
            rows.append(("submit -> finished p50 (espeak, short text)", ms(result["total_p50_s"])))
            for concurrency in (1, 16):
                result = submit.run(
                    stack.base_url, stack.api_key, 1000, concurrency, {"text": "Benchmark sentence.", "engine": "espeak", "cache": False}
                )
                rows.append((f"submit, {concurrency} clients: accepted/s", f"{result['accepted_per_s']:.0f}"))
                rows.append((f"submit, {concurrency} clients: p50 / p99", f"{ms(result['p50_s'])} / {ms(result['p99_s'])}"))
            result = sse.run(stack.base_url, stack.api_key, 500, 500, 16, watch_engine="slow")
            rows.append(
                (
                    "SSE: 500 streams opened in",
                    f"{result['open_s']:.2f} s ({result['streams_ok']} ok, {result['still_open']} open at the end)",
                )
            )
            for label, key in (("without streams", "baseline"), ("with 500 open streams", "loaded")):
                run_ = result[key]
                rows.append((f"submit, 16 clients, {label}: accepted/s (p99)", f"{run_['accepted_per_s']:.0f} ({ms(run_['p99_s'])})"))
            wait_all_done(stack.base_url, stack.api_key)
            result = dedup.run(stack.base_url, stack.api_key, 200)
            rows.append(("dedup: cache-hit submit p50 / p99", f"{ms(result['p50_s'])} / {ms(result['p99_s'])}"))
            rows.append(("dedup: engine runs for 201 identical requests", f"{result['engine_runs']} ({result['avoided']} avoided)"))
            stack.manage(
                "shell", "-c", "from tenants.models import Tenant; Tenant.objects.filter(slug='acme').update(allow_high_priority=True)"
            )
            result = priority.run(stack.base_url, stack.api_key, 500)
            rows.append(
                (
                    "priority: high job behind 500 normal: start delay",
                    f"{result['wait_s'] * 1000:.0f} ms ({result['started_ahead']} normal jobs started first)",
                )
            )
            result = fairness.run(stack.base_url, stack.api_key, stack.other_api_key, 800)
            rows.append(
                (
                    "fairness: B's job after A's burst of 800: start delay",
                    f"{result['wait_s'] * 1000:.0f} ms (behind {result['slots_behind']} of A's jobs)",
                )
            )
            wait_all_done(stack.base_url, stack.api_key)
            result = talking_head.end_to_end(stack.base_url, stack.api_key)
            rows.append(
                ("talking head: POST -> succeeded, 10 s clip at 512 px (builtin)", f"{result['total_s']:.2f} s ({result['status']})")
            )
        finally:
            stack.stop()
    rows.extend(intake.rows(intake.run()))  # its own stacks: SQLite, then Postgres
    rows.extend(speech_stream.rows(speech_stream.run_with_stack()))  # its own stack: piper loaded at worker boot
    isolation = voice_upload_isolation.run_with_stack()  # its own stack: its worker is frozen
    for path in ("/v1/usage", "/healthz"):
        idle, loaded = isolation["idle"][path], isolation["loaded"][path]
        still = f"{isolation['waiting_at_end']}/{isolation['flood']} still waiting at the end"
        label = f"tenant B's {path} p50 / p99 while A has {isolation['flood']} voice uploads waiting (idle)"
        rows.append((label, f"{ms(loaded[0])} / {ms(loaded[1])} ({ms(idle[0])} / {ms(idle[1])}); {still}"))
    for row in engine_speed.run():
        rows.append(
            (
                f"engine {row['engine']} [{row['language']}] RTF",
                f"{row['rtf']:.3f} ({row['audio_s']:.1f} s audio in {row['synth_s'] * 1000:.0f} ms)",
            )
        )
    for row in talking_head.run()["rows"]:
        label = f"talking head render, 10 s clip, {row['portrait']} {row['resolution']} px"
        rows.append((label, f"{row['wall_s']:.2f} s ({row['fps']:.1f} frames/s)"))
        if "correlation" in row:
            rows.append(
                (
                    f"lip sync ({row['portrait']}): mouth vs loudness r / lag / mouth in silence vs speech",
                    f"{row['correlation']:.3f} / {row['lag']} frames / {row['silent']:.3f} vs {row['speech']:.3f}",
                )
            )
    for database in ("sqlite", "postgres"):
        ops = _operations(database)
        rows.append(
            (f"ops ({database}, {ops['jobs']} jobs): /metrics scrape / dashboard data", f"{ms(ops['scrape_s'])} / {ms(ops['dashboard_s'])}")
        )
        rows.append(
            (
                f"ops ({database}): purge_expired, expired jobs with files",
                f"{ops['purge_per_s']:.0f} jobs/s ({ops['expired']} in {ops['purge_s']:.1f} s)",
            )
        )
    scale = _scaling()
    for instances in (1, 2):
        web = scale[f"web_{instances}"]
        rows.append(
            (
                f"through Traefik, {instances} web instance(s) x 1 process, Postgres: submits/s (p50 / p99)",
                f"{web['per_s']:.0f} ({ms(web['p50_s'])} / {ms(web['p99_s'])})",
            )
        )
    rows.append(("through Traefik: scaling factor 2 vs 1 web instances (same 2 cores)", f"{scale['scaling_factor']:.2f}"))
    cpu = scale["web_1"]["cpu_ms_per_submit"]
    rows.append(
        (
            "CPU per submit: web / Postgres / Traefik / Redis",
            " / ".join(f"{cpu[tier]:.2f} ms" for tier in ("web", "postgres", "traefik", "redis")),
        )
    )
    for engine in ("espeak", "piper"):
        worker = scale[f"worker_{engine}"]
        rows.append(
            (
                f"speech worker (1 process x 2 threads), {engine}: jobs/s; Postgres commits per job",
                f"{worker['jobs_per_s']:.2f}; {worker['db_commits_per_job']:.0f}",
            )
        )
    voices = voice_similarity.run()
    pairs = voices["rows"]
    mean = lambda key: sum(row[key] for row in pairs) / len(pairs)  # noqa: E731
    rows.append(
        (
            f"voice matching: speaker similarity without -> with ({len(pairs)} prompt x engine pairs)",
            f"{mean('without'):.3f} -> {mean('with'):.3f}",
        )
    )
    rows.append(("voice matching: word error rate (pocketsphinx) without -> with", f"{mean('wer_without'):.3f} -> {mean('wer_with'):.3f}"))
    rows.append(("pocketsphinx real-time factor (one core)", f"{voices['recognizer_rtf']:.3f}"))
    rows.append(("voice prompt analysis p50 (VAD + embedding + quality)", ms(voices["analysis_p50_s"])))
    table = "| benchmark | result |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)
    table += (
        "\n\n| prompt voice | engine | similarity without matching | with matching | WER without | with | matching kept |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    table += "\n".join(
        f"| {r['prompt']} | {r['engine']} | {r['without']:.3f} | {r['with']:.3f} | {r['wer_without']:.3f} | {r['wer_with']:.3f} "
        f"| {'yes' if r['applied'] else 'no (' + r['reason'] + ')'} |"
        for r in pairs
    )
    out = ROOT / "bench" / "results" / "latest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Mynah benchmarks ({os.cpu_count()} cores)\n\n{table}\n")
    print(table)
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
