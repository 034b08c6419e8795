"""``POST /v1/audio/speech`` and ``GET /v1/models`` with the real ``openai``
client against a real stack (gunicorn + Uvicorn, redis-server, a Dramatiq
worker running piper): the audio decodes and lasts as long as the text
should, errors arrive as the client's own exception classes, and the same
request twice is a dedup hit."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import av
import openai
import pytest
import requests

from harness.stack import Stack
from jobs.services.params import speech_duration_estimate

pytestmark = pytest.mark.integration

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs back home."


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("openai"), extra_env={"ENGINES_PRELOAD": "espeak,piper", "LOG_LEVEL": "WARNING"}).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, max_retries=0, timeout=120)


def _duration_s(data: bytes, response_format: str) -> float:
    """Decoded with PyAV: samples over rate (pcm: s16le mono at 24 kHz)."""
    if response_format == "pcm":
        assert len(data) % 2 == 0
        return len(data) / 2 / 24000
    samples, rate = 0, 0
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate > 0, "no audio decoded"
    return samples / rate


def _assert_lasts_as_the_text_should(seconds: float, text: str = TEXT) -> None:
    expected = speech_duration_estimate(text=text, language="en")
    assert 0.3 * expected < seconds < 2.0 * expected, (seconds, expected)


def test_speech_create_mp3_default(client):
    response = client.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=TEXT)
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["x-mynah-job-id"]
    _assert_lasts_as_the_text_should(_duration_s(response.content, "mp3"))


@pytest.mark.parametrize("response_format", ["wav", "opus", "aac", "flac", "pcm"])
def test_streamed_speech_in_several_formats(client, response_format):
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="nova", input=TEXT, response_format=response_format
    ) as response:
        assert response.status_code == 200
        assert response.headers.get("content-length") is None  # chunked: sent as it comes
        data = b"".join(response.iter_bytes())
    _assert_lasts_as_the_text_should(_duration_s(data, response_format))


def test_speed_and_a_mynah_engine_name(client):
    normal = _duration_s(client.audio.speech.create(model="piper", voice="echo", input=TEXT, response_format="wav").content, "wav")
    fast = _duration_s(client.audio.speech.create(model="piper", voice="echo", input=TEXT, response_format="wav", speed=1.5).content, "wav")
    assert fast < normal * 0.85, (fast, normal)


def test_the_same_request_twice_is_a_dedup_hit(client):
    text = "Say it once, hear it twice."
    first = client.audio.speech.with_raw_response.create(model="tts-1", voice="onyx", input=text, response_format="flac")
    second = client.audio.speech.with_raw_response.create(model="tts-1", voice="onyx", input=text, response_format="flac")
    assert (first.headers["x-mynah-cache-hit"], second.headers["x-mynah-cache-hit"]) == ("false", "true")
    assert first.headers["x-mynah-job-id"] != second.headers["x-mynah-job-id"]
    assert second.content == first.content


def test_sse_stream_format(stack, client):
    response = requests.post(
        f"{stack.base_url}/v1/audio/speech",
        json={"model": "gpt-4o-mini-tts", "voice": "coral", "input": TEXT, "response_format": "wav", "stream_format": "sse"},
        headers=stack.headers(),
        stream=True,
        timeout=120,
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: ") :]) for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert [event["type"] for event in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) > 1
    assert events[-1]["type"] == "speech.audio.done" and set(events[-1]["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    audio = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    _assert_lasts_as_the_text_should(_duration_s(audio, "wav"))
    with pytest.raises(openai.BadRequestError) as refused:  # OpenAI refuses sse for tts-1 too
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, stream_format="sse")
    assert refused.value.code == "unsupported_stream_format" and refused.value.param == "stream_format"


def test_errors_are_the_clients_exception_classes(stack, client):
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="not-a-key", max_retries=0).audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT
        )
    assert unauthenticated.value.body["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.audio.speech.create(model="tts-9", voice="alloy", input=TEXT)
    assert (unknown_model.value.code, unknown_model.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as too_fast:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, speed=3.0)
    assert too_fast.value.code == "unsupported_speed"
    with pytest.raises(openai.BadRequestError) as bad_voice:
        client.audio.speech.create(model="tts-1", voice="nobody", input=TEXT)
    assert (bad_voice.value.code, bad_voice.value.param) == ("validation_error", "voice")
    with pytest.raises(openai.UnprocessableEntityError) as no_instruct:  # piper has no 'instruct' option: refused, not ignored
        client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=TEXT, instructions="Whisper.")
    assert no_instruct.value.code == "unsupported_option"
    with pytest.raises(openai.NotFoundError) as unknown_voice:  # a voice id of no voice of this tenant
        client.audio.speech.create(model="tts-1", voice="0b5d7a36-0b0e-4d54-9d0e-8a8f0a1c2d3e", input=TEXT)
    assert unknown_voice.value.body["type"] == "invalid_request_error"


def test_models_list(client):
    models = {model.id for model in client.models.list()}
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "piper", "espeak"} <= models
