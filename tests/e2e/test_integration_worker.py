"""End to end through real processes: redis-server, gunicorn, Dramatiq."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from engines.audio.dsp import rms_dbfs
from engines.audio.io import decode_audio
from harness.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("stack")).start()
    yield running
    running.stop()


@pytest.mark.parametrize(("fmt", "content_type"), [("wav", "audio/wav"), ("mp3", "audio/mpeg")])
def test_job_goes_from_post_to_a_downloadable_result(stack, tmp_path, fmt, content_type):
    response = stack.submit(text="Real speech from a real worker. Two sentences.", format=fmt)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    job = stack.wait_terminal(response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 100 and job["attempts"] == 1 and job["engine"] == "piper"
    download = requests.get(job["result"]["url"], headers=stack.headers(), timeout=10)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == content_type
    assert int(download.headers["Content-Length"]) == job["result"]["size_bytes"]
    path = tmp_path / f"result.{fmt}"
    path.write_bytes(download.content)
    audio, rate = decode_audio(path)
    assert abs(len(audio) / rate - job["result"]["duration_s"]) < 0.1
    assert 1.5 < job["result"]["duration_s"] < 8 and rms_dbfs(audio) > -35
    # The other tenant cannot see or download it.
    other = requests.get(job["result"]["url"], headers=stack.headers(stack.other_api_key), timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


def test_readiness_sees_database_and_redis(stack):
    assert requests.get(f"{stack.base_url}/readyz", timeout=5).json() == {"status": "ready"}


def test_worker_survives_a_job_whose_engine_raises(stack):
    worker_pid = stack.supervisor.children["worker"].process.pid
    bad = stack.submit(text="This engine is broken.", engine="exploding").json()["id"]
    good = stack.submit(text="But this one works.", language="cmn").json()["id"]
    bad_job, good_job = stack.wait_terminal(bad), stack.wait_terminal(good)
    assert bad_job["status"] == "failed" and bad_job["error"]["code"] == "engine_error"
    assert bad_job["attempts"] == 3
    assert good_job["status"] == "succeeded"
    assert stack.supervisor.poll() == []  # nothing died
    assert stack.supervisor.children["worker"].process.pid == worker_pid


def test_no_job_is_lost_when_redis_is_down_at_submit(stack):
    stack.stop_redis()
    try:
        response = stack.submit(text="Submitted while Redis was down.")
        assert response.status_code == 202
        job_id = response.json()["id"]
        assert stack.job(job_id)["status"] == "queued"
    finally:
        stack.start_redis()  # same port and append-only file
    out = stack.manage("repair", "--unsent-after", "0")
    assert "resent 1 unsent job(s)" in out
    assert stack.wait_terminal(job_id)["status"] == "succeeded"


def test_supervisor_restarts_a_dead_worker(stack):
    child = stack.supervisor.children["worker"]
    os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait(timeout=10)
    assert stack.supervisor.poll() == ["worker"]
    job_id = stack.submit(text="Picked up by the restarted worker.").json()["id"]
    assert stack.wait_terminal(job_id, timeout=90)["status"] == "succeeded"


def test_the_apis_metrics_include_the_workers_samples(stack):
    """Web and worker processes share PROMETHEUS_MULTIPROC_DIR: one scrape of
    the API shows what the worker recorded."""
    from prometheus_client.parser import text_string_to_metric_families

    job = stack.wait_terminal(stack.submit(text="Counted by the worker.", language="cmn").json()["id"])
    assert job["status"] == "succeeded"
    text = requests.get(f"{stack.base_url}/metrics", timeout=10).text
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    assert total("mynah_engine_run_seconds_count", engine="espeak", outcome="succeeded") >= 1
    assert total("mynah_jobs_finished_total", status="succeeded") >= 1
    assert total("mynah_http_requests_total", route="v1/tts", method="POST", status="202") >= 1
    assert total("mynah_dependency_up", dependency="redis") == 1
