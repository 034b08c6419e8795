"""The OpenAI-compatible endpoints in-process (plain WSGI: the test client),
with a worker on the in-memory broker: the request goes through the job
machinery, errors carry both shapes, and the mapping refuses what it cannot
honour. The real client against a real server: test_openai_speech.py."""

from __future__ import annotations

import io

import av
import pytest

from jobs.models import Job
from tests.support.workers import running_worker, wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)

SPEECH = "/v1/audio/speech"


@pytest.fixture
def worker(stub_broker):
    with running_worker(stub_broker) as running:
        yield running


def test_speech_is_a_job_and_its_audio(api, tenant, worker):
    response = api.post(SPEECH, {"model": "espeak", "voice": "alloy", "input": "Hello from Mynah."}, format="json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "audio/mpeg"
    # The audio is relayed as it is made: the job may still be storing it.
    assert wait_for_job(api, response["X-Mynah-Job-Id"])["status"] == "succeeded"
    job = Job.objects.get(id=response["X-Mynah-Job-Id"])
    assert (job.tenant_id, job.input["format"], job.engine) == (tenant.id, "mp3", "espeak")
    assert response["X-Mynah-Cache-Hit"] == "false"
    with av.open(io.BytesIO(response.content)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0
    opus = api.post(SPEECH, {"model": "espeak", "voice": "alloy", "input": "Hello.", "response_format": "opus"}, format="json")
    assert opus["Content-Type"] == "audio/ogg" and opus.content[:4] == b"OggS"


def test_errors_carry_our_shape_and_openais(api, stub_broker):
    response = api.post(SPEECH, {"model": "tts-9", "voice": "alloy", "input": "Hi."}, format="json")
    error = response.json()["error"]
    assert response.status_code == 404
    assert (error["code"], error["type"], error["param"]) == ("model_not_found", "invalid_request_error", "model")
    assert error["message"] and error["request_id"] == response["X-Request-ID"]
    missing = api.post(SPEECH, {"model": "tts-1", "voice": "alloy"}, format="json").json()["error"]
    assert (missing["code"], missing["param"]) == ("validation_error", "input")
    assert "input" in missing["details"]["fields"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"speed": 0.25}, 400, "unsupported_speed"),
        ({"speed": 4.5}, 400, "validation_error"),
        ({"response_format": "ogg"}, 400, "validation_error"),
        ({"instructions": "Cheerfully."}, 422, "unsupported_option"),
        ({"stream_format": "sse"}, 400, "unsupported_stream_format"),
        ({"voice": {"id": "alloy"}, "extra": 1}, 400, "validation_error"),
    ],
)
def test_what_cannot_be_honoured_is_refused(api, stub_broker, change, status, code):
    response = api.post(SPEECH, {"model": "tts-1", "voice": "alloy", "input": "Hi.", **change}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert not Job.objects.exists()


def test_another_tenants_voice_is_not_found(api, other_tenant, stub_broker):
    from voices.models import VoicePrompt

    voice = VoicePrompt.objects.create(
        tenant=other_tenant, name="Theirs", status=VoicePrompt.Status.READY, upload_key="", upload_size_bytes=1
    )
    response = api.post(SPEECH, {"model": "tts-1", "voice": {"id": str(voice.id)}, "input": "Hi."}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_models_list(api):
    body = api.get("/v1/models").json()
    assert body["object"] == "list"
    by_id = {model["id"]: model for model in body["data"]}
    assert by_id["tts-1"]["engine"] == "piper" and by_id["espeak"]["object"] == "model"
    from rest_framework.test import APIClient

    refused = APIClient().get("/v1/models", HTTP_AUTHORIZATION="Bearer nope")
    assert (refused.status_code, refused.json()["error"]["type"]) == (401, "authentication_error")


def test_a_rate_limited_request_is_openais_rate_limit_error(api, stub_broker, settings):
    settings.TENANT_KEY_RATE_LIMIT_PER_MINUTE = 1
    assert api.get("/v1/models").status_code == 200
    limited = api.post(SPEECH, {"model": "tts-1", "voice": "alloy", "input": "Hi."}, format="json")
    error = limited.json()["error"]
    assert (limited.status_code, error["code"], error["type"]) == (429, "rate_limited", "rate_limit_error")
    assert limited["Retry-After"]
