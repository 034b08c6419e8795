"""Real synthesis with the built-in engines (no DB, no mocks)."""

from __future__ import annotations

import itertools
import wave

import numpy as np
import pytest

from engines.audio.dsp import rms_dbfs
from engines.audio.io import decode_audio
from engines.errors import Canceled
from engines.registry import default_engine_for, engine_class, engine_names, get_engine
from engines.tts.base import SpeechRequest
from engines.tts.espeak import voice_table

ENGLISH = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."


def _run(engine_name, tmp_path, **kwargs):
    events: list[tuple[int, str]] = []
    request = SpeechRequest(**{"language": "en", "format": "wav", **kwargs})
    result = get_engine(engine_name).run(request, lambda p, s: events.append((p, s)), tmp_path)
    return result, events


def _assert_speech(audio: np.ndarray, rate: int, min_s: float, max_s: float):
    duration = len(audio) / rate
    assert min_s <= duration <= max_s, duration
    assert rms_dbfs(audio) > -35, "output is (nearly) silent"
    # Speech has pauses and loud parts: the level varies over time.
    frames = audio[: len(audio) // 1024 * 1024].reshape(-1, 1024)
    frame_rms = np.sqrt((frames**2).mean(axis=1))
    assert frame_rms.max() > 4 * np.percentile(frame_rms, 10)


def test_piper_speaks_english_at_its_native_rate(tmp_path):
    result, events = _run("piper", tmp_path, text=ENGLISH)
    with wave.open(str(result.path)) as wav:
        assert wav.getframerate() == 22050 and wav.getnchannels() == 1
    audio, rate = decode_audio(result.path)
    # ~16 words: 2.5 to 8 seconds of speech is plausible for a natural voice.
    _assert_speech(audio, rate, 2.5, 8.0)
    assert result.duration_s == pytest.approx(len(audio) / rate, abs=0.01)
    assert [stage for _, stage in events][-1] == "encoding"
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(events))  # progress only grows


@pytest.mark.parametrize(
    ("language", "text"), [("cmn", "你好，世界。今天天气很好。"), ("yue", "你好，今日天氣好好。"), ("de", "Guten Morgen, wie geht es dir?")]
)
def test_espeak_speaks_other_languages(tmp_path, language, text):
    result, _ = _run("espeak", tmp_path, text=text, language=language, format="ogg")
    audio, rate = decode_audio(result.path)
    assert rate == 48000
    _assert_speech(audio, rate, 0.8, 8.0)


def test_longer_text_means_longer_audio(tmp_path_factory):
    short, _ = _run("espeak", tmp_path_factory.mktemp("short"), text="One sentence only.")
    long, _ = _run("espeak", tmp_path_factory.mktemp("long"), text="One sentence only. " * 6)
    assert long.duration_s > 4 * short.duration_s


def test_speed_changes_duration(tmp_path_factory):
    slow, _ = _run("piper", tmp_path_factory.mktemp("slow"), text=ENGLISH, speed=0.75)
    fast, _ = _run("piper", tmp_path_factory.mktemp("fast"), text=ENGLISH, speed=1.5)
    assert slow.duration_s > 1.5 * fast.duration_s


def test_long_text_is_chunked_with_progress_per_chunk(tmp_path):
    text = " ".join(f"This is sentence number {i}, spoken by the formant synthesizer." for i in range(60))
    assert len(text) > 3000
    result, events = _run("espeak", tmp_path, text=text, format="mp3")
    synth_events = [p for p, stage in events if stage == "synthesizing"]
    assert result.chunks >= 6
    assert len(synth_events) == result.chunks + 1  # start + one per chunk
    audio, rate = decode_audio(result.path)
    _assert_speech(audio, rate, 60, 400)


def test_cancel_from_progress_callback_stops_the_engine(tmp_path):
    calls = []

    def progress(percent, stage):
        calls.append(percent)
        if len(calls) == 3:
            raise Canceled("job")

    text = " ".join(f"Sentence {i} is here for the test." for i in range(80))
    with pytest.raises(Canceled):
        get_engine("espeak").run(SpeechRequest(text=text, language="en"), progress, tmp_path)
    assert len(calls) == 3
    assert not list(tmp_path.iterdir())  # nothing encoded


def test_espeak_language_table_matches_the_native_library():
    native = get_engine("espeak").list_native_voices()
    assert len(native) >= 100
    assert native <= set(voice_table())
    assert {"cmn", "yue", "en-us", "de", "fr"} <= set(voice_table())


def test_default_engine_by_language_and_registry():
    assert default_engine_for("en") == "piper"
    assert default_engine_for("EN-US") == "piper"
    assert default_engine_for("cmn") == "espeak"
    assert {"piper", "espeak"} <= set(engine_names())
    assert engine_class("piper").supports_language("en")
    assert not engine_class("piper").supports_language("cmn")
    assert get_engine("espeak") is get_engine("espeak")  # one instance per process


def test_two_espeak_instances_share_the_native_library_safely(tmp_path_factory):
    """The native synth callback is process-wide; a second instance must not
    steal the first one's samples."""
    from engines.tts.espeak import EspeakEngine

    first, second = EspeakEngine(), EspeakEngine()
    first.load()
    second.load()
    for engine in (first, second, first):
        audio = engine.synthesize_chunk("Both instances speak.", SpeechRequest(text="", language="en"))
        assert len(audio) > 0.5 * engine.sample_rate and rms_dbfs(audio) > -35
