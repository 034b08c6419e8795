"""Cancel (API + running job cleanup) and the job event stream (SSE)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from harness.doubles import SlowEngine
from jobs import events, services
from jobs.models import Job
from jobs.services import TtsParams
from webhooks.models import Delivery


def _submit(tenant, engine="tone", text="one two three") -> Job:
    params = TtsParams(text=text, language="en", engine=engine, format="wav", speed=1.0)
    return services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None, use_cache=False)


def _parse_sse(raw: str) -> list[dict]:
    frames = []
    for block in raw.split("\n\n"):
        frame = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(": ")
            frame[name] = value
        if "event" in frame:
            frame["data"] = json.loads(frame["data"])
            frames.append(frame)
    return frames


def _stream(api, job_id, **headers) -> list[dict]:
    response = api.get(f"/v1/jobs/{job_id}/events", HTTP_ACCEPT="text/event-stream", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/event-stream"
    return _parse_sse(_drain(response).decode())


def _drain(response) -> bytes:
    """The test client hands back the async iterator the ASGI server would drive."""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


# ---------------------------------------------------------------------- cancel


def test_cancel_a_queued_job_means_it_never_starts(api, tenant, stub_broker):
    job = _submit(tenant)
    response = api.post(f"/v1/jobs/{job.id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    services.job_run(job_id=str(job.id))  # its message is still delivered
    job.refresh_from_db()
    assert (job.status, job.started_at, job.attempts, job.result_key) == ("canceled", None, 0, "")


def test_cancel_a_terminal_job_is_409_job_not_cancelable(api, tenant):
    job = _submit(tenant)
    services.job_run(job_id=str(job.id))
    response = api.post(f"/v1/jobs/{job.id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_not_cancelable"
    assert response.json()["error"]["details"] == {"status": "succeeded"}
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_cancel_another_tenants_job_is_404(api, other_tenant):
    job = _submit(other_tenant)
    assert api.post(f"/v1/jobs/{job.id}/cancel").status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"


@pytest.mark.django_db(transaction=True)
def test_cancel_a_running_job_stops_it_at_the_next_progress_point_and_cleans_up(api, tenant):
    job = _submit(tenant, engine="slow", text=" ".join(f"Sentence number {i} is here." for i in range(40)))
    worker = threading.Thread(target=services.job_run, kwargs={"job_id": str(job.id)})
    worker.start()
    deadline = time.monotonic() + 10
    while Job.objects.get(id=job.id).stage != "synthesizing" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert SlowEngine.last_workdir is not None and (SlowEngine.last_workdir / "scratch.bin").exists()
    assert api.post(f"/v1/jobs/{job.id}/cancel").status_code == 200
    worker.join(timeout=10)
    assert not worker.is_alive()
    job.refresh_from_db()
    assert (job.status, job.result_key) == ("canceled", "")
    assert not SlowEngine.last_workdir.exists()  # temp files removed
    # Live streams learn it too: their final frame says canceled.
    assert "canceled" in {frame["data"]["status"] for frame in _stream(api, job.id) if frame["event"] == "done"}


def test_cancel_fires_a_job_canceled_webhook(api, tenant, settings, stub_broker):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    response = api.post("/v1/tts", {"text": "hi", "engine": "tone", "webhook_url": "http://127.0.0.1:9/hook"}, format="json")
    job_id = response.json()["id"]
    api.post(f"/v1/jobs/{job_id}/cancel")
    assert list(Delivery.objects.filter(job_id=job_id).values_list("event_type", flat=True)) == ["job.canceled"]


# ---------------------------------------------------------------------- events
# The stream reads the row from a thread pool (as under the ASGI server), so
# these tests need committed data: transactional database.
sse_db = pytest.mark.django_db(transaction=True)


@sse_db
def test_event_stream_of_a_finished_job_is_one_done_frame(api, tenant):
    job = _submit(tenant)
    services.job_run(job_id=str(job.id))
    frames = _stream(api, job.id)
    assert [frame["event"] for frame in frames] == ["done"]
    assert frames[0]["data"]["status"] == "succeeded"
    assert frames[0]["data"]["result"]["url"].endswith(f"/v1/jobs/{job.id}/result")


def test_worker_events_land_in_the_job_stream_in_order(tenant, redis_url):
    import redis

    job = _submit(tenant, text=" ".join(f"Sentence {i} here." for i in range(12)))
    services.job_run(job_id=str(job.id))
    entries = events.decode_entries(redis.Redis.from_url(redis_url).xrange(events.stream_key(job.id)))
    kinds = [event for _, event, _ in entries]
    assert kinds[0] == "status" and kinds[-1] == "done"
    assert kinds.count("progress") >= 3
    progress = [data["progress"] for _, event, data in entries if event == "progress"]
    assert progress == sorted(progress)
    assert entries[-1][2]["status"] == "succeeded"


@sse_db
def test_last_event_id_resumes_after_that_event(api, tenant, redis_url):
    import redis

    job = _submit(tenant)
    services.job_run(job_id=str(job.id))
    ids = [entry_id for entry_id, _, _ in events.decode_entries(redis.Redis.from_url(redis_url).xrange(events.stream_key(job.id)))]
    assert len(ids) >= 4
    resumed = _stream(api, job.id, HTTP_LAST_EVENT_ID=ids[1])
    assert [frame["id"] for frame in resumed] == ids[2:]
    assert resumed[-1]["event"] == "done"


@sse_db
@pytest.mark.timeout(60)
def test_reconnecting_after_the_done_event_ends_at_once(api, tenant, redis_url, settings):
    """A client that lost the connection right after ``done`` reconnects with
    its id: the answer is ``done`` again and the end of the stream, not a wait
    for an event that will never come. The wait would be the keepalive
    (here an hour), so a regression hangs until the timeout and fails."""
    import redis

    settings.SSE_KEEPALIVE_S = 3600.0
    job = _submit(tenant)
    services.job_run(job_id=str(job.id))
    client = redis.Redis.from_url(redis_url)
    entries = events.decode_entries(client.xrange(events.stream_key(job.id)))
    assert entries[-1][1] == "done"
    resumed = _stream(api, job.id, HTTP_LAST_EVENT_ID=entries[-1][0])
    assert [frame["event"] for frame in resumed] == ["done"]
    assert resumed[0]["data"]["status"] == "succeeded" and resumed[0]["data"]["id"] == str(job.id)
    # The job's event stream expired (JOB_EVENTS_TTL_S): the row still answers at once.
    client.delete(events.stream_key(job.id))
    resumed = _stream(api, job.id, HTTP_LAST_EVENT_ID=entries[1][0])
    assert [frame["event"] for frame in resumed] == ["done"]


@sse_db
def test_event_stream_errors_are_json(api, tenant, other_tenant):
    theirs = _submit(other_tenant)
    response = api.get(f"/v1/jobs/{theirs.id}/events", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "not_found"
    mine = _submit(tenant)
    response = api.get(f"/v1/jobs/{mine.id}/events", HTTP_LAST_EVENT_ID="../../etc")
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["code"] == "validation_error"


@sse_db
def test_event_stream_falls_back_to_the_row_when_redis_is_down(api, tenant, settings):
    from core.redis_server import free_port

    job = _submit(tenant)
    services.job_run(job_id=str(job.id))
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    frames = _stream(api, job.id)
    assert [frame["event"] for frame in frames] == ["done"]
    assert frames[0]["data"]["status"] == "succeeded"
