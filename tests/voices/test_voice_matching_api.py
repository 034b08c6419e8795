"""The client's switch for voice matching (``voice_matching``) and what a
speech job reports of its output (``result.quality``), through the API with a
real worker and real engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from harness.audio_samples import encode, padded, speech
from tests.support.workers import running_worker, wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)  # the worker thread needs committed rows


@pytest.fixture
def worker(stub_broker):
    with running_worker(stub_broker):
        yield


@pytest.fixture
def voice(api, worker, tmp_path: Path) -> dict:
    path = encode(padded(speech("en+f3")), tmp_path / "prompt.wav", "wav")
    upload = SimpleUploadedFile("prompt.wav", path.read_bytes(), content_type="audio/wav")
    created = api.post("/v1/voices", {"audio": upload, "name": "Stella"}, format="multipart")
    assert created.status_code == 201 and created.json()["status"] == "ready", created.content
    return created.json()


SENTENCE = "The birch canoe slid on the smooth planks."


def _speak(api, **fields) -> dict:
    response = api.post("/v1/tts", {"text": SENTENCE, **fields}, format="json")
    assert response.status_code == 202, response.content
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    return job


def test_off_leaves_the_engines_voice_and_still_reports_its_similarity(api, voice):
    job = _speak(api, voice_id=voice["id"], engine="espeak", voice_matching="off")
    assert job["input"]["voice_matching"] == "off"
    result = job["result"]
    assert result["voice"]["matching_applied"] is False and result["voice"]["reason"] == "off"
    assert result["quality"]["speaker_similarity"] == result["speaker_similarity"]
    assert "wer_matched" not in result["quality"]  # nothing was matched, so nothing to compare


def test_auto_reports_similarity_and_intelligibility_of_what_it_kept(api, voice):
    job = _speak(api, voice_id=voice["id"], engine="piper")
    assert "voice_matching" not in job["input"]  # the default is not spelled out: old requests stay identical
    result = job["result"]
    quality = result["quality"]
    assert 0 <= quality["wer"] <= 1 and 0 <= quality["wer_unmatched"] <= 1  # English: a recognizer ran
    assert quality["speaker_similarity"] == result["speaker_similarity"]
    if result["voice"]["matching_applied"]:
        assert quality["wer"] == quality["wer_matched"]
    else:
        assert quality["wer"] == quality["wer_unmatched"] and result["voice"]["reason"] in {"similarity", "intelligibility"}


def test_auto_and_off_are_different_requests(api, voice):
    first = _speak(api, voice_id=voice["id"], engine="espeak", voice_matching="off")
    second = api.post("/v1/tts", {"text": SENTENCE, "voice_id": voice["id"], "engine": "espeak"}, format="json").json()
    again = api.post(
        "/v1/tts", {"text": SENTENCE, "voice_id": voice["id"], "engine": "espeak", "voice_matching": "off"}, format="json"
    ).json()
    assert second["cache_hit"] is False
    assert again["cache_hit"] is True and again["result"]["quality"] == first["result"]["quality"]


def test_voice_matching_without_a_voice_is_refused(api):
    response = api.post("/v1/tts", {"text": "Hello.", "voice_matching": "off"}, format="json")
    assert response.status_code == 400
    assert "voice_matching" in response.json()["error"]["details"]["fields"]
    response = api.post("/v1/tts", {"text": "Hello.", "voice_matching": "sometimes"}, format="json")
    assert response.status_code == 400 and "voice_matching" in response.json()["error"]["details"]["fields"]


def test_an_engine_that_clones_has_no_matching_to_switch(api, voice, monkeypatch):
    monkeypatch.setenv("COSYVOICE_URLS", "http://127.0.0.1:9")  # configured; nothing is contacted at submit
    body = {"text": "Hello.", "voice_id": voice["id"], "engine": "cosyvoice", "voice_matching": "off"}
    response = api.post("/v1/tts", body, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unsupported_option" and error["details"]["options"] == ["voice_matching"]


def test_talking_head_takes_voice_matching_only_with_text(api, voice, tmp_path):
    from PIL import Image

    from harness.portraits import grace_hopper

    image = tmp_path / "face.png"
    Image.fromarray(grace_hopper()).save(image)
    audio = encode(np.zeros(16000, dtype=np.float32) + 0.01, tmp_path / "a.wav", "wav")
    fields = {
        "image": SimpleUploadedFile("face.png", image.read_bytes(), content_type="image/png"),
        "audio": SimpleUploadedFile("a.wav", audio.read_bytes(), content_type="audio/wav"),
        "voice_matching": "off",
    }
    response = api.post("/v1/talking-head", fields, format="multipart")
    assert response.status_code == 400 and "voice_matching" in response.json()["error"]["details"]["fields"]
