"""POST /v1/voices honours Idempotency-Key like every POST: the same key and
the same request (the same audio bytes) give the same voice; the same key
with another request is 422."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from voices.models import VoicePrompt

pytestmark = pytest.mark.django_db

WAV = b"RIFF" + bytes(5000)


@pytest.fixture(autouse=True)
def _no_wait(settings, stub_broker):
    settings.VOICE_ANALYSIS_WAIT_S = 0  # no worker: the upload answers while the voice is processing


def _upload(api, *, key: str | None, content: bytes = WAV, name: str = "Stella", file_name: str = "a.wav"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    audio = SimpleUploadedFile(file_name, content, content_type="audio/wav")
    return api.post("/v1/voices", {"audio": audio, "name": name}, format="multipart", **headers)


def test_the_same_key_and_request_give_the_same_voice(api):
    first = _upload(api, key="voice-1")
    assert first.status_code == 201, first.content
    again = _upload(api, key="voice-1", file_name="renamed.wav")  # the file's name is not its content
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert VoicePrompt.objects.count() == 1


def test_the_same_key_with_other_audio_or_fields_is_422(api):
    assert _upload(api, key="voice-2").status_code == 201
    for response in (_upload(api, key="voice-2", content=WAV + b"\0"), _upload(api, key="voice-2", name="Other")):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert VoicePrompt.objects.count() == 1


def test_without_a_key_each_upload_is_a_new_voice(api):
    assert _upload(api, key=None).status_code == 201
    assert _upload(api, key=None).status_code == 201
    assert VoicePrompt.objects.count() == 2


def test_keys_are_per_tenant(api, other_api):
    mine = _upload(api, key="shared-key").json()
    theirs = _upload(other_api, key="shared-key")
    assert theirs.status_code == 201 and theirs.json()["id"] != mine["id"]


def test_a_refused_upload_releases_its_key(api, settings):
    settings.VOICE_MAX_UPLOAD_BYTES = 100
    assert _upload(api, key="voice-3").status_code == 413
    settings.VOICE_MAX_UPLOAD_BYTES = 10_000_000
    assert _upload(api, key="voice-3").status_code == 201


class _InstanceDied(BaseException):
    """The instance going away mid-request: no ``except Exception`` runs."""


def test_an_upload_that_dies_after_its_voice_committed_is_replayed_not_repeated(api, monkeypatch):
    import voices.apis

    created, died = voices.apis._created, []

    def dying(voice):
        if not died:
            died.append(str(voice.id))
            raise _InstanceDied
        return created(voice)

    monkeypatch.setattr(voices.apis, "_created", dying)
    with pytest.raises(_InstanceDied):
        _upload(api, key="voice-died")
    assert VoicePrompt.objects.count() == 1  # committed before the instance died
    again = _upload(api, key="voice-died")
    assert (again.status_code, again["Idempotent-Replayed"], again.json()["id"]) == (200, "true", died[0])
    assert again["Location"] == f"/v1/voices/{died[0]}"
    assert VoicePrompt.objects.count() == 1
