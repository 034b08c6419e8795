"""Fault injection through real processes: a worker killed mid-job, Redis
killed during a burst of submits, PostgreSQL stopped under load. Each test
runs its own stack and prints what it measured (run with ``-s``)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import requests

from engines.audio.io import decode_audio
from harness.postgres import PostgresCluster
from harness.stack import Stack, list_all_jobs

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "canceled", "expired"}
# Requests and jobs are not what these tests limit.
UNLIMITED = {
    "TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
    "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "10000000",
    "TENANT_MAX_ACTIVE_JOBS": "10000000",
}
# Fast recovery: Redis gives a dead worker's unacked messages back after 3 s
# without its heartbeat; a running job silent for 4 s may be claimed again.
FAST_RECOVERY = {
    "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "3000",
    "DRAMATIQ_MAINTENANCE_CHANCE": "50000",
    "JOB_HEARTBEAT_TIMEOUT_S": "4",
    "LOG_LEVEL": "INFO",
}


def _text(sentences: int, tag: str) -> str:
    """Distinct English text; the slow engine takes 0.3 s per 300 characters."""
    return " ".join(f"Sentence {i} of {tag}, written to be spoken slowly by a test engine." for i in range(sentences))


def _job_events(stack: Stack, job_id: str) -> list[tuple[str, dict]]:
    """(event, data) for every entry of the job's Redis event stream."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        entries = client.xrange(f"mynah:job-events:{job_id}")
    finally:
        client.close()
    return [(fields[b"event"].decode(), json.loads(fields[b"data"])) for _, fields in entries]


def _all_jobs(stack: Stack, session: requests.Session | None = None) -> dict[str, dict]:
    return list_all_jobs(session or requests.Session(), stack.base_url, stack.headers())


def _wait_all_terminal(stack: Stack, job_ids: set[str], timeout: float, what: str) -> tuple[dict[str, dict], float]:
    """Polls the job list until every one of ``job_ids`` is terminal; returns
    the jobs and how long it took."""
    started = time.monotonic()
    session = requests.Session()
    last_report = started
    while True:
        jobs = _all_jobs(stack, session)
        pending = {job_id for job_id in job_ids if jobs.get(job_id, {}).get("status") not in TERMINAL}
        if not pending:
            return jobs, time.monotonic() - started
        now = time.monotonic()
        if now - started > timeout:
            by_status = Counter(jobs.get(job_id, {}).get("status", "missing") for job_id in pending)
            sample = [jobs.get(job_id) for job_id in sorted(pending)[:3]]
            raise AssertionError(f"{what}: {len(pending)} job(s) not terminal after {timeout} s: {dict(by_status)}; e.g. {sample}")
        if now - last_report > 10:
            print(f"  ... {len(pending)} of {len(job_ids)} job(s) not terminal yet ({now - started:.0f} s)")
            last_report = now
        time.sleep(1.0)


def _stored_objects(stack: Stack, job_id: str) -> list[Path]:
    return sorted(path for path in stack.media_root.glob(f"tenants/*/jobs/{job_id}/*") if path.is_file())


def _logs_tail(stack: Stack, lines: int = 60) -> str:
    if stack.log_dir is None:
        return ""
    out = []
    for path in sorted(stack.log_dir.glob("*.log")):
        out.append(f"--- {path.name}")
        out.extend(path.read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(out)


# --------------------------------------------------------------------------- (a)


def test_a_worker_killed_mid_job_finishes_the_job_once(tmp_path):
    """SIGKILL the Dramatiq worker process (not its master: what an OOM
    killer hits) while it runs a job. The master exits, the supervisor starts
    a new one, Redis hands the unacked message back once the dead worker's
    heartbeat is 3 s old, and the new worker claims the job once its own
    heartbeat is 4 s stale. No reaper runs: this is recovery by itself.

    Timing-sensitive by nature: a message redelivered before the job's
    heartbeat is stale is answered JobBusy, retried with the job backoff
    (50-200 ms in the stack), and after 5 such retries dead-lettered: the job
    then stays running until a reaper requeues it. The restart and boot of
    the worker (4-6 s on 2 cores) keep that from happening here."""
    stack = Stack(tmp_path, extra_env=FAST_RECOVERY, log_children=True)
    try:
        stack.start()
        stack.supervise()
        first_worker = stack.supervisor.children["worker"].process.pid
        # ~17 chunks of 300 characters: about 5 s on the slow engine.
        response = stack.submit(text=_text(65, "the killed worker test")[:4900], engine="slow", cache=False)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        running = stack.wait_until(
            lambda: (body := stack.job(job_id))["status"] == "running" and body["progress"] > 0 and body,
            timeout=30,
            what="the job to run",
            interval=0.05,
        )
        assert running["attempts"] == 1
        killed_pid = stack.kill_child("worker")
        killed_at = time.monotonic()
        print(f"\n(a) killed worker process {killed_pid} (master {first_worker}) at progress {running['progress']} %")

        restarted = stack.wait_until(lambda: stack.restarts, timeout=30, what="the supervisor to restart the worker")
        assert restarted[0][0] == "worker"
        print(f"(a) master exited and was restarted {restarted[0][1] - killed_at:.2f} s after the kill")
        new_worker = stack.supervisor.children["worker"].process.pid
        assert new_worker != first_worker

        def observe():
            body = stack.job(job_id)
            if body["status"] == "running" and body["attempts"] == 2 and "claimed_at" not in marks:
                marks["claimed_at"] = time.monotonic()
            return body if body["status"] in TERMINAL else None

        marks: dict[str, float] = {}
        try:
            job = stack.wait_until(observe, timeout=90, what="the job to finish after the kill", interval=0.1)
        except TimeoutError:
            body = stack.job(job_id)
            raise AssertionError(f"job not finished 90 s after the kill, without a reaper: {body}\n{_logs_tail(stack)}") from None
        recovered = time.monotonic() - killed_at
        if "claimed_at" in marks:
            print(f"(a) second attempt claimed {marks['claimed_at'] - killed_at:.2f} s after the kill")
        print(f"(a) recovery (kill -> succeeded), no reaper: {recovered:.2f} s")

        assert job["status"] == "succeeded", f"{job}\n{_logs_tail(stack)}"
        assert job["attempts"] == 2, job
        assert job["progress"] == 100
        # The row is the record; its "done" event is appended a moment after the UPDATE.
        stack.wait_until(lambda: any(event == "done" for event, _ in _job_events(stack, job_id)), timeout=10, what="the done event")
        time.sleep(1.0)  # a duplicate would show up now
        events = _job_events(stack, job_id)
        summary = [(event, data.get("status"), data.get("attempts"), data.get("progress")) for event, data in events]
        print(f"(a) event stream: {len(events)} entries; status/done events: {[s for s in summary if s[0] != 'progress']}")
        assert [data["status"] for event, data in events if event == "done"] == ["succeeded"], summary
        assert [data["status"] for event, data in events if data.get("status") == "succeeded"] == ["succeeded"], summary
        objects = _stored_objects(stack, job_id)
        assert [path.name for path in objects] == ["output-2.wav"], objects

        download = requests.get(job["result"]["url"], headers=stack.headers(), timeout=30)
        assert download.status_code == 200
        result = tmp_path / "result.wav"
        result.write_bytes(download.content)
        audio, rate = decode_audio(result)
        assert abs(len(audio) / rate - job["result"]["duration_s"]) < 0.1
        assert job["result"]["duration_s"] > 10  # every chunk is in it
        assert stack.restarts == restarted[:1]  # one restart: the new worker did not die
    finally:
        stack.stop()


# --------------------------------------------------------------------------- (b)


def test_b_redis_killed_during_a_burst_loses_no_accepted_job(tmp_path):
    """1,000 submits from 12 clients; after ~300 are accepted redis-server is
    SIGKILLed (the append-only file may lose its last second) and started
    again 2 s later on the same port and data. Submits keep answering 202
    (jobs are saved first, dispatched later); the reaper (as cron runs it)
    re-sends what Redis lost; every accepted job succeeds."""
    total, clients, kill_after = 1000, 12, 300
    stack = Stack(
        tmp_path,
        worker_threads=4,
        extra_env={**UNLIMITED, "JOB_RESEND_QUEUED_AFTER_S": "5", "LOG_LEVEL": "WARNING"},
        log_children=True,
    )
    try:
        stack.start()
        stack.supervise()
        accepted: list[str] = []
        statuses: Counter = Counter()
        errors: Counter = Counter()
        others: list[str] = []
        lock = threading.Lock()
        counter = iter(range(total))
        half_way = threading.Event()

        def client() -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {stack.api_key}"
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                payload = {"text": f"Burst job number {index}, spoken once.", "engine": "tone", "cache": False}
                try:
                    response = session.post(f"{stack.base_url}/v1/tts", json=payload, timeout=30)
                except requests.RequestException as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                    continue
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 202:
                        accepted.append(response.json()["id"])
                        if len(accepted) >= kill_after:
                            half_way.set()
                    elif len(others) < 5:
                        others.append(response.text[:300])

        started = time.monotonic()
        threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
        for thread in threads:
            thread.start()
        assert half_way.wait(timeout=120), "the burst did not reach 300 accepted jobs"
        stack.kill_redis()
        killed_at = time.monotonic()
        with lock:
            accepted_at_kill, at_kill = len(accepted), statuses.copy()
        time.sleep(2)
        with lock:
            during_outage = statuses - at_kill
        stack.start_redis()
        restarted_at = time.monotonic()
        for thread in threads:
            thread.join(timeout=300)
        burst_s = time.monotonic() - started
        print(
            f"\n(b) burst: {total} submits from {clients} clients in {burst_s:.1f} s; statuses {dict(statuses)}, "
            f"connection errors {dict(errors)}; Redis killed after {accepted_at_kill} accepted "
            f"({killed_at - started:.1f} s in), back after {restarted_at - killed_at:.1f} s; "
            f"answers while it was down: {dict(during_outage)}"
        )
        if others:
            print("(b) non-202 answers:", *others, sep="\n  ")
        assert not errors, f"connection errors from the API: {dict(errors)}"
        assert set(statuses) == {202}, f"statuses {dict(statuses)}: {others}"
        assert len(accepted) == total and len(set(accepted)) == total

        with stack.reaper(interval=2.0) as reaps:
            jobs, drain_s = _wait_all_terminal(stack, set(accepted), timeout=150, what="after the Redis restart")
        resent = [line.split("; stopped")[0] for line in reaps if not line.startswith("resent 0 unsent job(s); requeued 0 ")]
        print(
            f"(b) drained in {drain_s:.1f} s after the burst ({time.monotonic() - started:.1f} s from the first submit); "
            f"{len(reaps)} reaper runs, those that did something: {resent[:10]}"
        )
        outcome = Counter(jobs[job_id]["status"] for job_id in accepted)
        print(f"(b) outcome: {dict(outcome)}; attempts: {dict(Counter(jobs[job_id]['attempts'] for job_id in accepted))}")
        assert outcome == Counter({"succeeded": total}), outcome
        assert not [line for line in reaps if line.startswith("error")], reaps
        assert stack.restarts == [], stack.restarts  # neither the worker nor the web died
    finally:
        stack.stop()


# --------------------------------------------------------------------------- (c)


def _is_service_unavailable(response: requests.Response) -> tuple[bool, str]:
    try:
        body = response.json()
    except ValueError:
        return False, f"{response.status_code} not JSON: {response.text[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    ok = (
        response.status_code == 503
        and isinstance(error, dict)
        and error.get("code") == "service_unavailable"
        and {"code", "message", "details", "request_id"} <= set(error)
    )
    return ok, f"{response.status_code} {json.dumps(body)[:300]}"


def test_c_postgres_stopped_for_10_s_answers_503_and_recovers(tmp_path):
    """PostgreSQL stops ("fast": connections cut) for 10 s while jobs run.
    Every API answer meanwhile is 503 service_unavailable (never a 500 or a
    dropped connection); afterwards the same processes answer again by
    themselves and every accepted job succeeds (the reaper runs, as cron)."""
    cluster = PostgresCluster().init().start()
    stack = None
    try:
        cluster.create_database("mynah")
        stack = Stack(
            tmp_path,
            extra_env={**UNLIMITED, **FAST_RECOVERY, "DATABASE_URL": cluster.url("mynah"), "JOB_RESEND_QUEUED_AFTER_S": "5"},
            log_children=True,
        )
        stack.start()
        stack.supervise()
        pids = {name: child.process.pid for name, child in stack.supervisor.children.items()}
        # 16 jobs of ~2.4 s (8 chunks) on 2 worker threads: ~20 s of work.
        before = []
        for n in range(16):
            response = stack.submit(text=_text(30, f"job {n} before the outage")[:2300], engine="slow", cache=False)
            assert response.status_code == 202, response.text
            before.append(response.json()["id"])
        stack.wait_until(lambda: stack.job(before[0])["status"] == "running", timeout=30, what="a job to run")
        time.sleep(1.0)
        states = Counter(stack.job(job_id)["status"] for job_id in before)
        print(f"\n(c) before the outage: {dict(states)}")
        assert states["running"] >= 1

        with stack.reaper(interval=2.0) as reaps:
            cluster.stop("fast")
            stopped_at = time.monotonic()
            answers: Counter = Counter()
            bad: list[str] = []
            session = requests.Session()
            session.headers.update(stack.headers())
            probes = {
                "job": lambda: session.get(f"{stack.base_url}/v1/jobs/{before[-1]}", timeout=15),
                "submit": lambda: session.post(
                    f"{stack.base_url}/v1/tts",
                    json={"text": "Submitted while the database is down.", "engine": "tone", "cache": False},
                    timeout=15,
                ),
                "readyz": lambda: requests.get(f"{stack.base_url}/readyz", timeout=15),
            }
            while time.monotonic() - stopped_at < 10:
                for name, probe in probes.items():
                    try:
                        response = probe()
                    except requests.RequestException as exc:
                        answers[(name, type(exc).__name__)] += 1
                        bad.append(f"{name}: {type(exc).__name__}: {exc}")
                        continue
                    ok, summary = _is_service_unavailable(response)
                    if ok and name == "readyz":
                        ok = "database" in response.json()["error"]["details"].get("failing", {})
                    answers[(name, response.status_code)] += 1
                    if not ok:
                        bad.append(f"{name}: {summary}")
                time.sleep(0.1)
            down_s = time.monotonic() - stopped_at
            cluster.start()
            restarted_at = time.monotonic()
            print(f"(c) Postgres down {down_s:.1f} s; answers meanwhile: {dict(answers)}")
            if bad:
                print(f"(c) {len(bad)} bad answer(s) during the outage:", *bad[:10], sep="\n  ")

            def back(name: str, expected: int):
                def check():
                    try:
                        response = probes[name]()
                    except requests.RequestException:
                        return None
                    return response if response.status_code == expected else None

                return check

            first = stack.wait_until(back("job", 200), timeout=30, what="GET /v1/jobs/<id> to answer 200", interval=0.05)
            job_back = time.monotonic() - restarted_at
            stack.wait_until(back("readyz", 200), timeout=30, what="/readyz to answer 200", interval=0.05)
            ready_back = time.monotonic() - restarted_at
            submitted = stack.wait_until(back("submit", 202), timeout=30, what="POST /v1/tts to answer 202", interval=0.05)
            submit_back = time.monotonic() - restarted_at
            print(
                f"(c) after Postgres started again: GET job 200 in {job_back:.2f} s, readyz 200 in {ready_back:.2f} s, POST 202 in {submit_back:.2f} s"
            )
            assert first.json()["id"] == before[-1]

            after = [submitted.json()["id"]]
            for n in range(4):
                response = stack.submit(text=_text(10, f"job {n} after the outage"), engine="slow", cache=False)
                assert response.status_code == 202, response.text
                after.append(response.json()["id"])
            try:
                jobs, _drain_s = _wait_all_terminal(stack, set(before + after), timeout=120, what="after the Postgres outage")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nreaper: {reaps[-5:]}\n{_logs_tail(stack)}") from None
        print(f"(c) all {len(before) + len(after)} accepted jobs terminal {time.monotonic() - restarted_at:.1f} s after Postgres came back")
        outcome = {
            job_id: (jobs[job_id]["status"], jobs[job_id]["attempts"], (jobs[job_id]["error"] or {}).get("code"))
            for job_id in before + after
        }
        print(
            f"(c) outcome: {dict(Counter(status for status, _, _ in outcome.values()))}; attempts: {dict(Counter(a for _, a, _ in outcome.values()))}"
        )
        failed_runs = [line for line in reaps if line.startswith("error")]
        acted = [line.split("; stopped")[0] for line in reaps if not line.startswith(("error", "resent 0 unsent job(s); requeued 0 "))]
        print(f"(c) reaper: {len(reaps)} runs, {len(failed_runs)} failed while the database was down; those that acted: {acted}")
        restarted = {name: child.process.pid for name, child in stack.supervisor.children.items()}
        print(f"(c) supervisor restarts: {stack.restarts}")
        assert not bad, f"{len(bad)} answer(s) were not 503 service_unavailable: {bad[:10]}"
        assert all(status == "succeeded" for status, _, _ in outcome.values()), outcome
        assert restarted == pids and stack.restarts == [], (pids, restarted, stack.restarts)
    finally:
        if stack is not None:
            stack.stop()
        cluster.remove()
