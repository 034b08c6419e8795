"""Voices API end to end: multipart upload, analysis in a real Dramatiq worker
(stub broker, real Redis notice), speech in a voice, tenant isolation."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from harness.audio_samples import FORMATS, RATE, encode, padded, speech
from jobs.models import Job
from tests.support.workers import running_worker, wait_for_job
from voices.models import VoicePrompt

pytestmark = pytest.mark.django_db(transaction=True)  # the worker thread needs committed rows


@pytest.fixture
def worker(stub_broker):
    with running_worker(stub_broker) as running:
        yield running


def _audio_file(tmp_path: Path, audio: np.ndarray, fmt: str = "wav", name: str = "prompt.wav") -> SimpleUploadedFile:
    path = encode(audio, tmp_path / f"source.{fmt}", fmt)
    return SimpleUploadedFile(name, path.read_bytes(), content_type="application/octet-stream")


def _upload(api, upload: SimpleUploadedFile, **fields):
    return api.post("/v1/voices", {"audio": upload, "name": "Stella", **fields}, format="multipart")


@pytest.fixture
def stella(api, worker, tmp_path) -> dict:
    response = _upload(api, _audio_file(tmp_path, padded(speech("en+f3"))), transcript="Please call Stella.")
    assert response.status_code == 201, response.content
    return response.json()


def test_upload_is_analysed_and_returned_ready(api, stella):
    assert set(stella) == {
        "id",
        "name",
        "language",
        "transcript",
        "status",
        "duration_s",
        "speech_s",
        "sample_rate",
        "quality",
        "error",
        "created_at",
    }
    assert stella["status"] == "ready"
    assert stella["name"] == "Stella" and stella["language"] == "en" and stella["transcript"] == "Please call Stella."
    assert stella["sample_rate"] == RATE
    assert 3 < stella["speech_s"] < stella["duration_s"] < 12
    assert stella["quality"] == {"score": 1.0, "warnings": []}
    assert stella["error"] is None
    assert api.get(f"/v1/voices/{stella['id']}").json() == stella
    assert [voice["id"] for voice in api.get("/v1/voices").json()["results"]] == [stella["id"]]
    voice = VoicePrompt.objects.get(id=stella["id"])
    assert len(voice.embedding) == 256 and len(voice.content_sha256) == 64
    with default_storage.open(voice.prompt_key) as prompt:
        assert prompt.read(4) == b"RIFF"


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - {"wav"}))
def test_every_format_is_accepted(api, worker, tmp_path, fmt):
    response = _upload(api, _audio_file(tmp_path, padded(speech("en+m3")), fmt, name="voice.bin"))
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "ready"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda tmp: SimpleUploadedFile("a.wav", b"", content_type="audio/wav"), "audio_unreadable"),
        (lambda tmp: SimpleUploadedFile("a.wav", b"\x89PNG\r\n\x1a\n" + b"\0" * 5000, content_type="audio/wav"), "audio_unreadable"),
        (lambda tmp: _audio_file(tmp, np.zeros(8 * RATE, np.float32)), "no_speech"),
        (lambda tmp: _audio_file(tmp, padded(speech("piper")[: 2 * RATE])), "audio_too_short"),
        (lambda tmp: _audio_file(tmp, np.concatenate([speech("piper")] * 5)), "audio_too_long"),
    ],
)
def test_rejected_uploads_get_their_code_and_leave_nothing(api, worker, tmp_path, make, code):
    files_before = set(Path(default_storage.location).rglob("voices/*/*"))
    response = _upload(api, make(tmp_path))
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == code
    assert not VoicePrompt.objects.exists()
    assert set(Path(default_storage.location).rglob("voices/*/*")) == files_before


def test_a_file_over_the_limit_is_413(api, settings, tmp_path):
    settings.VOICE_MAX_UPLOAD_BYTES = 100_000
    response = _upload(api, _audio_file(tmp_path, padded(speech("piper"))))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


def test_missing_fields_and_unknown_language_are_validation_errors(api, tmp_path):
    assert _upload(api, _audio_file(tmp_path, speech("piper")), name="").json()["error"]["code"] == "validation_error"
    response = api.post("/v1/voices", {"name": "x"}, format="multipart")
    assert response.status_code == 400 and "audio" in response.json()["error"]["details"]["fields"]
    response = _upload(api, _audio_file(tmp_path, speech("piper")), language="xx-nope")
    assert response.json()["error"]["code"] == "unsupported_language"


def test_the_client_file_name_never_reaches_storage(api, worker, tmp_path):
    upload = _audio_file(tmp_path, padded(speech("en+f3")), name="../../../etc/passwd.wav")
    voice = VoicePrompt.objects.get(id=_upload(api, upload).json()["id"])
    for key in (voice.upload_key, voice.prompt_key):
        assert key.startswith(f"tenants/{voice.tenant_id}/voices/{voice.id}/") and "passwd" not in key and ".." not in key


def test_delete_removes_the_voice_and_its_files(api, stella):
    voice = VoicePrompt.objects.get(id=stella["id"])
    assert api.delete(f"/v1/voices/{stella['id']}").status_code == 204
    assert api.get(f"/v1/voices/{stella['id']}").status_code == 404
    assert not default_storage.exists(voice.prompt_key) and not default_storage.exists(voice.upload_key)


def test_another_tenants_voice_is_404_everywhere(api, other_api, stella):
    voice_id = stella["id"]
    assert other_api.get(f"/v1/voices/{voice_id}").status_code == 404
    assert other_api.delete(f"/v1/voices/{voice_id}").status_code == 404
    assert other_api.get("/v1/voices").json()["results"] == []
    response = other_api.post("/v1/tts", {"text": "Hello.", "voice_id": voice_id}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert api.get(f"/v1/voices/{voice_id}").status_code == 200  # untouched


def test_speech_in_a_voice_reports_speaker_similarity(api, stella):
    body = {"text": "The river runs slowly to the sea.", "voice_id": stella["id"], "engine": "espeak"}
    response = api.post("/v1/tts", body, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["input"]["voice_id"] == stella["id"]
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert -1 <= result["speaker_similarity"] <= 1
    assert result["voice"]["mode"] == "matching"
    assert result["speaker_similarity"] >= result["voice"]["speaker_similarity_unmatched"]


def test_dedup_tells_voices_apart(api, worker, stella, tmp_path):
    other = _upload(api, _audio_file(tmp_path, padded(speech("en+m3")))).json()
    body = {"text": "Same words.", "engine": "espeak"}
    first = api.post("/v1/tts", {**body, "voice_id": stella["id"]}, format="json").json()
    wait_for_job(api, first["id"])
    again = api.post("/v1/tts", {**body, "voice_id": stella["id"]}, format="json").json()
    assert again["cache_hit"] is True and again["status"] == "succeeded"
    assert again["result"]["speaker_similarity"] == wait_for_job(api, first["id"])["result"]["speaker_similarity"]
    in_other_voice = api.post("/v1/tts", {**body, "voice_id": other["id"]}, format="json").json()
    assert in_other_voice["cache_hit"] is False


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        ({"engine": "piper", "instruct": "Speak sadly."}, "unsupported_option", 422),
        ({"engine": "espeak", "instruct": "Speak sadly."}, "unsupported_option", 422),
        ({"engine": "cosyvoice", "voice": True}, "engine_not_configured", 422),
    ],
)
def test_options_an_engine_cannot_honour_are_refused_at_submit(api, stella, body, code, status):
    payload = {"text": "Hello.", **body}
    if payload.pop("voice", False):
        payload["voice_id"] = stella["id"]
    response = api.post("/v1/tts", payload, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert not Job.objects.exists()


def test_a_voice_still_processing_cannot_be_used(api, stub_broker, settings, tmp_path):
    settings.VOICE_ANALYSIS_WAIT_S = 0  # no worker: the upload returns before analysis
    response = _upload(api, _audio_file(tmp_path, padded(speech("en+f3"))))
    assert (response.status_code, response.json()["status"]) == (201, "processing")
    assert response.json()["quality"] is None
    tts = api.post("/v1/tts", {"text": "Hello.", "voice_id": response.json()["id"]}, format="json")
    assert (tts.status_code, tts.json()["error"]["code"]) == (409, "voice_not_ready")
    # The analysis catches up once a worker runs; GET shows the verdict.
    with running_worker(stub_broker):
        stub_broker.join("voices", timeout=60_000)
    assert api.get(f"/v1/voices/{response.json()['id']}").json()["status"] == "ready"


def test_a_job_whose_voice_was_deleted_fails_clearly(api, stella, stub_broker, worker):
    worker.stop()  # hold the job in the queue while the voice goes away
    response = api.post("/v1/tts", {"text": "Too late.", "voice_id": stella["id"], "engine": "espeak"}, format="json")
    assert api.delete(f"/v1/voices/{stella['id']}").status_code == 204
    with running_worker(stub_broker):
        job = wait_for_job(api, response.json()["id"])
    assert (job["status"], job["error"]["code"]) == ("failed", "voice_deleted")


def test_a_lost_analysis_message_is_resent_by_the_reaper(api, stub_broker, settings, tmp_path):
    from django.core.management import call_command

    settings.VOICE_ANALYSIS_WAIT_S = 0
    voice_id = _upload(api, _audio_file(tmp_path, padded(speech("en+f3")))).json()["id"]
    stub_broker.flush_all()  # the message is lost (Redis restarted without persistence, say)
    VoicePrompt.objects.filter(id=voice_id).update(created_at=VoicePrompt.objects.get(id=voice_id).created_at.replace(year=2020))
    call_command("repair", stdout=StringIO())
    with running_worker(stub_broker):
        stub_broker.join("voices", timeout=60_000)
    assert api.get(f"/v1/voices/{voice_id}").json()["status"] == "ready"


def test_a_storage_outage_at_upload_is_503_and_saves_nothing(api, settings, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("storage root replaced by a file: every write fails in the filesystem")
    settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": {"location": blocked}}}
    response = _upload(api, _audio_file(tmp_path, padded(speech("en+f3"))))
    assert (response.status_code, response.json()["error"]["code"]) == (503, "service_unavailable")
    assert not VoicePrompt.objects.exists()
