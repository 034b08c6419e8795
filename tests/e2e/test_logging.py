"""Every line every process writes is JSON with request_id and job_id keys:
gunicorn/uvicorn and the app in the web process, the Dramatiq master and
worker processes (real processes, their real output)."""

from __future__ import annotations

import json

import pytest
import requests

from harness.stack import Stack

pytestmark = pytest.mark.integration


def test_web_and_worker_processes_write_only_json_lines_with_request_and_job_ids(tmp_path):
    stack = Stack(tmp_path, log_children=True).start()
    try:
        job_id = stack.submit(text="Logged from end to end.", language="cmn").json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "succeeded"
        missing = requests.get(
            f"{stack.base_url}/v1/jobs/00000000-0000-4000-8000-000000000000",
            headers={**stack.headers(), "X-Request-ID": "trace-me-42"},
            timeout=10,
        )
        assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "trace-me-42"
    finally:
        stack.stop()

    records: dict[str, list[dict]] = {}
    for name in ("web", "worker"):
        lines = [line for line in (tmp_path / "logs" / f"{name}.log").read_text().splitlines() if line.strip()]
        assert lines, f"{name} wrote nothing"
        for line in lines:
            record = json.loads(line)  # every line, boot and shutdown included
            assert {"time", "level", "logger", "message", "request_id", "job_id"} <= record.keys(), line
        records[name] = [json.loads(line) for line in lines]

    web_loggers = {record["logger"] for record in records["web"]}
    assert {"gunicorn.error", "uvicorn.error"} <= web_loggers
    assert "uvicorn.access" not in web_loggers  # off unless ACCESS_LOG=1
    assert any(r["request_id"] == "trace-me-42" and r["logger"] == "django.request" for r in records["web"])
    worker_loggers = {record["logger"] for record in records["worker"]}
    assert "dramatiq.MainProcess" in worker_loggers  # the master's own lines
    assert any(r["job_id"] == job_id and r["message"] == "job succeeded" for r in records["worker"])


def test_access_log_lines_only_with_access_log_on(tmp_path):
    stack = Stack(tmp_path, log_children=True, extra_env={"ACCESS_LOG": "1"}).start()
    try:
        assert requests.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200
    finally:
        stack.stop()
    records = [json.loads(line) for line in (tmp_path / "logs" / "web.log").read_text().splitlines() if line.strip()]
    assert any(r["logger"] == "uvicorn.access" and "GET /healthz" in r["message"] for r in records)
