"""Two CosyVoice-protocol servers behind a real Traefik (file provider,
health checks): one is killed mid-run and every job still succeeds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.redis_server import free_port
from engines import registry
from harness.audio_samples import padded, speech
from harness.traefik import Traefik, http_status
from jobs.models import Job
from tests.support.workers import running_worker, wait_for_job
from tests.voices.test_voices_api import _audio_file, _upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """tests/cosyvoice_server.py in its own process, so it can be SIGKILLed."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.log = workdir / f"{name}.jsonl"
        self.log.touch()
        argv = [sys.executable, "-m", "tests.support.cosyvoice_server", "--port", str(self.port), "--log", str(self.log)]
        self.process = subprocess.Popen([*argv, "--chunk-delay", "0.05"], cwd=ROOT)
        deadline = time.monotonic() + 15
        while http_status(self.url + "/docs") != 200:
            assert time.monotonic() < deadline and self.process.poll() is None, "stub server did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def cosyvoice_pair(tmp_path, monkeypatch):
    servers = [ServerProcess(tmp_path, "a"), ServerProcess(tmp_path, "b")]
    proxy = Traefik([s.url for s in servers], health_path="/docs", health_interval_s=0.5, workdir=tmp_path / "traefik")
    try:
        proxy.start()
        monkeypatch.setenv("COSYVOICE_URLS", proxy.url)
        registry._instances.pop("cosyvoice", None)  # built from the environment on first use
        yield servers, proxy
    finally:
        registry._instances.pop("cosyvoice", None)
        proxy.stop()
        for server in servers:
            server.kill()


def test_every_job_succeeds_when_an_instance_dies_mid_run(api, stub_broker, tmp_path, cosyvoice_pair):
    (first, second), _ = cosyvoice_pair
    # Two chunks per job (the adapter sends at most 200 characters at a time).
    text = " ".join(f"Sentence number {n} of this job is long enough to need some time to say." for n in range(4))
    with running_worker(stub_broker):
        voice = _upload(api, _audio_file(tmp_path, padded(speech("en+f3"))), transcript="Please call Stella.").json()
        assert voice["status"] == "ready"
        job_ids = [
            api.post(
                "/v1/tts", {"text": f"Job {i}. {text}", "voice_id": voice["id"], "engine": "cosyvoice", "cache": False}, format="json"
            ).json()["id"]
            for i in range(12)
        ]
        deadline = time.monotonic() + 30
        while len(second.calls()) < 3:  # both instances are serving
            assert time.monotonic() < deadline, "traffic never reached the second instance"
            time.sleep(0.02)
        second.kill()
        calls_at_kill = len(second.calls())
        finished_at_kill = Job.objects.filter(status="succeeded", engine="cosyvoice").count()
        jobs = [wait_for_job(api, job_id, timeout=90) for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 12, [job["error"] for job in jobs]
    assert all(job["result"]["voice"]["mode"] == "cloned" for job in jobs)
    assert Job.objects.filter(status="succeeded", engine="cosyvoice").count() == 12
    assert finished_at_kill < 12  # the kill landed mid-run
    assert len(second.calls()) == calls_at_kill
    assert len(first.calls()) + calls_at_kill >= 24  # two chunks per job, each sent once at least
    assert any(call["path"] == "/inference_zero_shot" for call in first.calls())
