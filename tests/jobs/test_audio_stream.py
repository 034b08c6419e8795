"""Streamed speech: the worker publishes, the relay (jobs/audio_stream.py)
hands the audio on while it is made. Real engines or doubles, real Redis,
real storage; the job runs in a thread as a worker would run it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.storage import default_storage

from engines.audio.io import decode_audio
from harness.doubles import GatedEngine
from jobs import services
from jobs.audio_stream import AudioStreamError, job_audio_chunks
from jobs.models import Job

# The relay reads the row from a thread pool (as under the ASGI server): committed data.
pytestmark = pytest.mark.django_db(transaction=True)

THREE_SENTENCES = "One two three. Four five six. Seven eight nine."


@pytest.fixture
def gate():
    GatedEngine.gate.clear()
    yield GatedEngine.gate
    GatedEngine.gate.set()  # never leave a worker thread waiting


def _submit(api, **payload) -> dict:
    response = api.post("/v1/tts", {"text": THREE_SENTENCES, "engine": "gated", "format": "mp3", "stream": True, **payload}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def _run_in_background(job_id: str) -> threading.Thread:
    worker = threading.Thread(target=services.job_run, kwargs={"job_id": job_id})
    worker.start()
    return worker


def _stored(job_id: str) -> bytes:
    job = Job.objects.get(id=job_id)
    assert job.status == "succeeded", (job.status, job.error_code)
    with default_storage.open(job.result_key) as handle:
        return handle.read()


def _decoded_seconds(data: bytes, tmp_path: Path, ext: str) -> float:
    path = tmp_path / f"streamed.{ext}"
    path.write_bytes(data)
    audio, rate = decode_audio(path)
    return len(audio) / rate


def _drain_view(response) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def test_the_first_audio_arrives_while_the_job_is_still_running(api, gate, tmp_path):
    body = _submit(api)
    assert body["audio_stream_url"].endswith(f"/v1/jobs/{body['id']}/audio-stream")
    job = Job.objects.get(id=body["id"])
    worker = _run_in_background(body["id"])
    seen: dict[str, object] = {}

    async def read() -> bytes:
        chunks = job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id)
        first = await anext(chunks)
        # The engine waits at the gate for its second sentence: the job cannot have finished.
        seen["status"] = await sync_to_async(lambda: Job.objects.get(id=job.id).status)()
        gate.set()
        return first + b"".join([chunk async for chunk in chunks])

    streamed = async_to_sync(read)()
    worker.join(timeout=30)
    assert seen["status"] == "running"
    assert streamed == _stored(body["id"])  # the stored result is the streamed bytes
    assert _decoded_seconds(streamed, tmp_path, "mp3") == pytest.approx(0.9, abs=0.1)  # 3 sentences x 3 words x 0.1 s of tone


def test_the_http_stream_is_the_stored_file_and_decodes(api, tmp_path):
    response = api.post(
        "/v1/tts", {"text": "Streaming is here. It works well.", "engine": "piper", "format": "ogg", "stream": True}, format="json"
    )
    job_id = response.json()["id"]
    worker = _run_in_background(job_id)
    stream = api.get(f"/v1/jobs/{job_id}/audio-stream")
    assert stream.status_code == 200 and stream["Content-Type"] == "audio/ogg"
    assert "Content-Length" not in stream  # chunked
    streamed = _drain_view(stream)
    worker.join(timeout=60)
    assert streamed == _stored(job_id)
    assert _decoded_seconds(streamed, tmp_path, "ogg") > 1.5


def _read_opening_the_gate(job: Job, gate: threading.Event) -> bytes:
    """The whole stream, live: the gate opens once the first audio is in."""

    async def read() -> bytes:
        chunks = job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id)
        first = await anext(chunks)
        gate.set()
        return first + b"".join([chunk async for chunk in chunks])

    return async_to_sync(read)()


def test_a_live_wav_stream_differs_from_the_stored_file_only_in_its_two_sizes(api, gate):
    body = _submit(api, format="wav")
    worker = _run_in_background(body["id"])
    streamed = _read_opening_the_gate(Job.objects.get(id=body["id"]), gate)
    worker.join(timeout=30)
    stored = _stored(body["id"])
    assert streamed[44:] == stored[44:] and streamed[40:44] == b"\xff\xff\xff\xff"


def test_a_dedup_hit_streams_the_stored_result_at_once(api):
    first = _submit(api)
    GatedEngine.gate.set()
    services.job_run(job_id=first["id"])
    second = _submit(api)
    assert second["cache_hit"] is True and second["status"] == "succeeded"
    streamed = _drain_view(api.get(f"/v1/jobs/{second['id']}/audio-stream"))
    assert streamed == _stored(first["id"])


def test_a_follower_relays_the_audio_of_the_job_it_joined(api, gate):
    source = _submit(api)
    follower = _submit(api)  # identical, while the first is queued: it joins it
    assert Job.objects.get(id=follower["id"]).dedup_of_id is not None
    worker = _run_in_background(source["id"])
    streamed = _read_opening_the_gate(Job.objects.get(id=follower["id"]), gate)
    worker.join(timeout=30)
    assert streamed == _stored(source["id"]) == _stored(follower["id"])


@pytest.mark.parametrize("cancel_on_disconnect", [False, True])
def test_a_client_that_leaves_cancels_the_job_only_when_it_asked(api, gate, cancel_on_disconnect):
    body = _submit(api, cancel_on_disconnect=cancel_on_disconnect)
    job = Job.objects.get(id=body["id"])
    worker = _run_in_background(body["id"])

    async def read_one_and_leave() -> None:
        chunks = job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id)
        await anext(chunks)
        await chunks.aclose()  # what a dropped connection does to the relay

    async_to_sync(read_one_and_leave)()
    gate.set()
    worker.join(timeout=30)
    job.refresh_from_db()
    assert job.status == ("canceled" if cancel_on_disconnect else "succeeded")


def test_cancel_on_disconnect_needs_stream(api):
    response = api.post("/v1/tts", {"text": "hi", "cancel_on_disconnect": True}, format="json")
    assert response.status_code == 400
    assert "cancel_on_disconnect" in response.json()["error"]["details"]["fields"]


def test_another_tenants_stream_is_404(api, other_api):
    body = _submit(api)
    response = other_api.get(f"/v1/jobs/{body['id']}/audio-stream")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_job_that_fails_mid_speech_ends_the_stream_with_its_code(api):
    response = api.post("/v1/tts", {"text": "hi", "engine": "rejecting", "stream": True}, format="json")
    job = Job.objects.get(id=response.json()["id"])
    worker = _run_in_background(str(job.id))

    async def read() -> None:
        async for _chunk in job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id):
            pass

    with pytest.raises(AudioStreamError) as raised:
        async_to_sync(read)()
    worker.join(timeout=30)
    assert raised.value.code == "job_failed" and "text_rejected" in raised.value.message
    # Once failed, the route answers with the error before any stream.
    again = api.get(f"/v1/jobs/{job.id}/audio-stream")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_failed"


def test_talking_head_jobs_do_not_stream(api, tenant):
    from jobs.models import Job as JobModel

    job = JobModel.objects.create(tenant=tenant, kind=JobModel.Kind.TALKING_HEAD, engine="builtin", input={})
    response = api.get(f"/v1/jobs/{job.id}/audio-stream")
    assert response.status_code == 409 and response.json()["error"]["code"] == "stream_unavailable"


def test_without_redis_the_stream_comes_from_storage_once_the_job_is_done(api, gate, settings, monkeypatch):
    from jobs import events

    # Event appends pause after a failure; the pause must not outlive this test.
    monkeypatch.setattr(events, "_paused_until", 0.0)
    body = _submit(api)
    job = Job.objects.get(id=body["id"])
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there: publishing and relaying both fail
    settings.AUDIO_STREAM_POLL_S = 0.05
    worker = _run_in_background(body["id"])
    gate.set()

    async def read() -> bytes:
        return b"".join([chunk async for chunk in job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id)])

    streamed = async_to_sync(read)()
    worker.join(timeout=30)
    assert streamed == _stored(body["id"])


@pytest.mark.parametrize("stored_differs", [False, True])
def test_entries_lost_by_redis_are_never_relayed_as_a_gap(api, gate, redis_url, settings, stored_differs):
    """A restarted Redis can lose the last entries it acknowledged (append-only
    file synced once a second) while the worker goes on publishing: the
    relay sees the offsets jump and takes the rest from the stored file."""
    import redis

    from jobs.services import audio_publish

    settings.AUDIO_STREAM_POLL_S = 0.05
    body = _submit(api, text="One two three. Four five six. Seven eight nine. Ten eleven twelve.")
    gate.set()
    services.job_run(job_id=body["id"])  # published while made: its whole stream is in Redis
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(audio_publish.audio_key(body["id"]))
    data = [entry_id for entry_id, fields in entries if fields[b"t"] == b"data"]
    assert len(data) >= 3
    client.xdel(audio_publish.audio_key(body["id"]), data[1])  # what the restart lost
    job = Job.objects.get(id=body["id"])
    Job.objects.filter(id=job.id).update(status="running")  # read while "still being made"
    if stored_differs:  # e.g. another attempt's audio: what was sent is not its beginning
        stored_path = Path(default_storage.path(job.result_key))
        stored_path.write_bytes(bytes(len(stored_path.read_bytes())))

    async def read() -> bytes:
        chunks = job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id)
        first = await anext(chunks)
        # The gap is next: the relay waits for the row; the job "finishes" now.
        await sync_to_async(lambda: Job.objects.filter(id=job.id).update(status="succeeded"))()
        return first + b"".join([chunk async for chunk in chunks])

    if stored_differs:
        with pytest.raises(AudioStreamError) as raised:
            async_to_sync(read)()
        assert raised.value.code == "stream_interrupted"
    else:
        assert async_to_sync(read)() == _stored(body["id"])


def test_speech_longer_than_the_stream_cap_continues_from_storage(api, gate, settings, redis_url):
    import redis

    from jobs.services import audio_publish

    settings.AUDIO_STREAM_MAX_BYTES = 12_000  # the first sentence's WAV (~9.6 kB) fits, the second does not
    settings.AUDIO_STREAM_POLL_S = 0.05
    body = _submit(api, format="wav")
    worker = _run_in_background(body["id"])
    streamed = _read_opening_the_gate(Job.objects.get(id=body["id"]), gate)
    worker.join(timeout=30)
    stored = _stored(body["id"])
    assert len(stored) > 12_000
    assert streamed[44:] == stored[44:] and streamed[40:44] == b"\xff\xff\xff\xff"
    published = redis.Redis.from_url(redis_url).xrange(audio_publish.audio_key(body["id"]))
    assert sum(len(fields.get(b"d", b"")) for _, fields in published) <= 12_000  # the rest came from storage
    assert published[-1][1][b"outcome"] == b"overflow"
