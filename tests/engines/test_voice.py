"""Voice prompt decoding, analysis, matching: real audio, real models."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from engines.tts.base import SpeechRequest, VoiceReference
from engines.voice import speaker
from engines.voice.analysis import analyze_prompt
from engines.voice.matching import match_voice, voice_profile
from engines.voice.prompt import DecodedPrompt, PromptRejected, decode_prompt
from harness.audio_samples import FORMATS, RATE, encode, padded, speech

# ------------------------------------------------------------------ decoding


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_upload_format_decodes_to_16k_mono_of_the_right_length(tmp_path, fmt):
    audio = padded(speech("en+f3"))
    # A misleading extension on purpose: the bytes decide the format.
    decoded = decode_prompt(encode(audio, tmp_path / "upload.txt", fmt), max_audio_s=60)
    assert isinstance(decoded, DecodedPrompt)
    assert abs(decoded.duration_s - audio.size / RATE) < 0.12  # codec priming/padding at most
    assert decoded.samples.dtype == np.float32
    # The same speech: the loudness envelopes line up (after AAC's priming delay, at most 0.2 s).
    original, back = _envelope(audio), _envelope(decoded.samples)
    best = max(np.corrcoef(original[: min(original.size, back.size - lag)], back[lag : lag + original.size])[0, 1] for lag in range(11))
    assert best > 0.9


def _envelope(audio: np.ndarray, hop: int = 320) -> np.ndarray:
    n = audio.size // hop * hop
    return np.sqrt(np.mean(audio[:n].reshape(-1, hop) ** 2, axis=1))


def _wav_header(data_size: int, rate: int = 16000) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + data_size, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty", b""),
        ("text", b"this is not audio at all, just text pretending to be a .wav file\n" * 10),
        ("random", np.random.default_rng(1).bytes(50_000)),
        ("png", b"\x89PNG\r\n\x1a\n" + b"\0" * 2000),
        ("header_only", _wav_header(0)),
    ],
)
def test_non_audio_is_audio_unreadable(tmp_path, name, content):
    path = tmp_path / f"{name}.wav"
    path.write_bytes(content)
    with pytest.raises(PromptRejected) as caught:
        decode_prompt(path, max_audio_s=60)
    assert caught.value.code == "audio_unreadable"


def test_truncated_files_decode_what_is_there(tmp_path):
    audio = padded(speech("en+f3"))
    for fmt in ("wav", "mp3", "flac"):
        whole = encode(audio, tmp_path / f"whole.{fmt}", fmt).read_bytes()
        cut = tmp_path / f"cut.{fmt}"
        cut.write_bytes(whole[: len(whole) // 2])
        decoded = decode_prompt(cut, max_audio_s=60)
        assert 0.3 < decoded.duration_s / (audio.size / RATE) < 0.7, fmt


def test_a_huge_declared_size_costs_only_the_real_bytes(tmp_path):
    """A WAV header claiming 4 GB of samples over 1 s of data."""
    path = tmp_path / "liar.wav"
    path.write_bytes(_wav_header(0xFFFFFFF0) + (np.zeros(16000, "<i2")).tobytes())
    assert decode_prompt(path, max_audio_s=60).duration_s == pytest.approx(1.0, abs=0.01)


def test_decoding_stops_at_the_length_cap(tmp_path):
    """Two minutes of silence compress to a few KB of FLAC: a decompression
    bomb for anyone who decodes it all first."""
    path = encode(np.zeros(120 * RATE, np.float32), tmp_path / "bomb.flac", "flac")
    assert path.stat().st_size < 100_000
    with pytest.raises(PromptRejected) as caught:
        decode_prompt(path, max_audio_s=60)
    assert caught.value.code == "audio_too_long"


# ------------------------------------------------------------------ analysis


def test_clean_speech_is_trimmed_normalized_and_scored_without_warnings():
    clean = padded(speech("piper"), seconds=1.0)
    analysis = analyze_prompt(clean)
    assert analysis.warnings == ()
    assert analysis.score == 1.0
    assert 5.5 < analysis.speech_s < 9
    assert analysis.audio.size < clean.size - RATE  # the silent second on each side is mostly gone
    assert analysis.metrics["speech_dbfs"] < 0
    assert analysis.embedding.shape == (speaker.EMBEDDING_SIZE,)
    assert np.linalg.norm(analysis.embedding) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (lambda x: x + np.random.default_rng(0).normal(0, 0.05, x.size).astype(np.float32), "noisy"),
        (lambda x: np.clip(x * 8, -1, 1), "clipping"),
        (lambda x: x * 0.01, "low_level"),
        (lambda x: np.concatenate([x, padded(speech("en"))]), "multiple_speakers"),
        (lambda x: padded(speech("piper")[: int(4.5 * RATE)]), "short_prompt"),
    ],
)
def test_quality_problems_are_named_and_lower_the_score(damage, warning):
    analysis = analyze_prompt(damage(padded(speech("piper"))).astype(np.float32))
    assert warning in analysis.warnings
    assert analysis.score < 1.0


@pytest.mark.parametrize(
    ("audio", "code"),
    [
        (np.zeros(10 * RATE, np.float32), "no_speech"),
        (np.random.default_rng(2).normal(0, 0.001, 10 * RATE).astype(np.float32), "no_speech"),
        (padded(speech("piper")[: 2 * RATE]), "audio_too_short"),
        (np.concatenate([speech("piper")] * 5), "audio_too_long"),
    ],
)
def test_speech_length_limits(audio, code):
    with pytest.raises(PromptRejected) as caught:
        analyze_prompt(audio)
    assert caught.value.code == code


# ------------------------------------------------------------------ matching

OTHER_TEXT = "The quick brown fox jumps over the lazy dog, while the river runs slowly to the sea."


def test_matching_moves_another_voice_toward_the_prompt():
    prompt = speech("en+f3")
    target = speaker.embed(prompt)
    output = speech("piper", OTHER_TEXT)
    before = speaker.similarity(speaker.embed(output), target)
    matched = match_voice(output, RATE, voice_profile(prompt))
    after = speaker.similarity(speaker.embed(matched), target)
    assert matched.size == output.size
    assert after > before + 0.1, (before, after)
    # Pitch moved to the prompt's (higher) register: log-F0 within 0.05 of it.
    pitch = voice_profile(prompt).log_f0_mean
    assert abs(voice_profile(output).log_f0_mean - pitch) > 0.1
    assert abs(voice_profile(matched).log_f0_mean - pitch) < 0.05


def test_engine_run_reports_similarity_and_keeps_matching_only_when_it_helps(tmp_path):
    from engines.registry import get_engine

    prompt_path = encode(speech("en+f3"), tmp_path / "prompt.wav")
    voice = VoiceReference(audio_path=prompt_path, embedding=tuple(speaker.embed(speech("en+f3"))))
    result = get_engine("espeak").run(SpeechRequest(text=OTHER_TEXT, language="en", voice=voice), lambda *_: None, tmp_path)
    report = result.voice
    assert report["mode"] == "matching"
    assert report["matching_applied"] == (report["speaker_similarity"] > report["speaker_similarity_unmatched"])
    assert report["speaker_similarity"] >= report["speaker_similarity_unmatched"]
    assert -1 <= report["speaker_similarity"] <= 1
