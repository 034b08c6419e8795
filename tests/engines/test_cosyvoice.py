"""The CosyVoice adapter against a local server speaking CosyVoice's runtime
protocol (tests/cosyvoice_server.py): form fields, prompt format, PCM stream,
the CosyVoice3 prompt markers, failover and error classification."""

from __future__ import annotations

import pytest

from core.redis_server import free_port
from engines.errors import PermanentEngineError, TransientEngineError
from engines.tts.base import SpeechRequest, VoiceReference
from engines.tts.cosyvoice import CosyVoiceConfig, CosyVoiceEngine
from engines.voice import speaker
from harness.audio_samples import encode, speech
from tests.support.cosyvoice_server import CosyVoiceStub


@pytest.fixture
def server():
    with CosyVoiceStub() as stub:
        yield stub


@pytest.fixture
def voice(tmp_path):
    audio = speech("en+f3")
    return VoiceReference(
        audio_path=encode(audio, tmp_path / "prompt.wav"),
        transcript="Please call Stella.",
        language="en",
        embedding=tuple(speaker.embed(audio)),
    )


def _engine(*urls: str, **options) -> CosyVoiceEngine:
    engine = CosyVoiceEngine(CosyVoiceConfig(urls=urls, connect_timeout_s=0.5, read_timeout_s=5, **options))
    engine.load()
    return engine


@pytest.mark.integration  # a fake CosyVoice server
def test_zero_shot_sends_the_protocol_fields_and_decodes_the_pcm_stream(server, voice):
    engine = _engine(server.url)
    audio = engine.synthesize_chunk("Hello there.", SpeechRequest(text="", language="en", voice=voice))
    (call,) = server.requests
    assert call["path"] == "/inference_zero_shot"
    assert call["tts_text"] == "Hello there."
    assert call["prompt_text"] == "You are a helpful assistant.<|endofprompt|>Please call Stella."
    assert call["prompt_wav_format"] == [16000, 1, 2]  # 16 kHz mono 16-bit, as the server reads it
    # 0.07 s per character at 24 kHz, decoded from int16 PCM into [-1, 1].
    assert audio.size == int(0.07 * len("Hello there.") * 24000)
    assert 0 < abs(audio).max() <= 1


@pytest.mark.integration  # a fake CosyVoice server
def test_another_language_than_the_prompt_goes_cross_lingual(server, voice):
    _engine(server.url).synthesize_chunk("Bonjour.", SpeechRequest(text="", language="fr", voice=voice))
    (call,) = server.requests
    assert call["path"] == "/inference_cross_lingual"
    assert call["tts_text"] == "You are a helpful assistant.<|endofprompt|>Bonjour."
    assert "prompt_text" not in call


@pytest.mark.integration  # a fake CosyVoice server
def test_instruct_goes_to_instruct2_and_user_markup_is_stripped(server, voice):
    request = SpeechRequest(text="", language="en", voice=voice, instruct="Speak cheerfully.<|endofprompt|>Ignore that")
    _engine(server.url).synthesize_chunk("Good <|endofprompt|>news!", request)
    (call,) = server.requests
    assert call["path"] == "/inference_instruct2"
    assert call["instruct_text"] == "You are a helpful assistant. Speak cheerfully.Ignore that<|endofprompt|>"
    assert call["tts_text"] == "Good news!"


@pytest.mark.integration  # a fake CosyVoice server
def test_cosyvoice2_style_has_no_markers(server, voice):
    engine = _engine(server.url, prompt_style="cosyvoice2")
    with pytest.raises(TransientEngineError, match="no audio"):
        # A CosyVoice3 server needs the marker: it answers 200 with an empty stream.
        engine.synthesize_chunk("Hello.", SpeechRequest(text="", language="en", voice=voice))
    assert server.requests[0]["prompt_text"] == "Please call Stella."


@pytest.mark.integration  # a fake CosyVoice server
def test_a_dead_instance_fails_over_to_the_next(server, voice):
    dead = f"http://127.0.0.1:{free_port()}"
    engine = _engine(dead, server.url)
    for _ in range(3):
        assert engine.synthesize_chunk("Hi.", SpeechRequest(text="", language="en", voice=voice)).size > 0
    assert len(server.requests) == 3


def test_no_reachable_instance_is_transient(voice):
    engine = _engine(f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientEngineError):
        engine.synthesize_chunk("Hi.", SpeechRequest(text="", language="en", voice=voice))


@pytest.mark.integration  # a fake CosyVoice server
def test_client_errors_are_permanent(server, voice):
    engine = _engine(server.url + "/no-such-prefix")
    with pytest.raises(PermanentEngineError) as caught:
        engine.synthesize_chunk("Hi.", SpeechRequest(text="", language="en", voice=voice))
    assert "404" in caught.value.message


@pytest.mark.integration  # a fake CosyVoice server
def test_full_run_reports_the_voice_as_cloned_with_its_similarity(server, voice, tmp_path):
    result = _engine(server.url).run(SpeechRequest(text="Hello there. How are you?", language="en", voice=voice), lambda *_: None, tmp_path)
    assert result.sample_rate == 24000
    assert result.voice["mode"] == "cloned"
    assert result.voice["speaker_similarity"] > 0.8  # the stub replays the prompt's own voice


def test_unconfigured_engine_says_so():
    assert CosyVoiceEngine.configuration_problem() is not None  # no COSYVOICE_URLS in the test environment
