"""Speech encoded while it is made: the audio callback's bytes are the
result file, and they come sentence by sentence (no DB, no mocks)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from engines.audio.io import FORMATS, decode_audio
from engines.registry import get_engine
from engines.tts.base import SpeechRequest, TTSEngine, VoiceReference
from engines.voice import speaker
from harness.audio_samples import encode, speech

FIVE_SENTENCES = (
    "The quick brown fox jumps over the lazy dog. Streaming speech starts before the whole text is made. "
    "Each sentence is encoded as soon as it is spoken. The listener hears the first words at once. "
    "That is the point of this test."
)


def _streamed(engine: TTSEngine, tmp_path, **fields):
    parts: list[bytes] = []
    request = SpeechRequest(language="en", on_audio=parts.append, **fields)
    result = engine.run(request, lambda *_: None, tmp_path)
    return result, parts


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_piper_streams_its_result_file_sentence_by_sentence(tmp_path, fmt):
    result, parts = _streamed(get_engine("piper"), tmp_path, text=FIVE_SENTENCES, format=fmt)
    assert len(parts) >= 5  # at least one piece of audio per sentence (plus the codec's tail)
    streamed, stored = b"".join(parts), result.path.read_bytes()
    if fmt == "wav":  # the header's two sizes: placeholders in the stream (engines/audio/io.py)
        assert streamed[44:] == stored[44:] and streamed[40:44] == b"\xff\xff\xff\xff"
    else:
        assert streamed == stored
    path = tmp_path / f"streamed.{FORMATS[fmt].extension}"
    path.write_bytes(streamed)
    audio, rate = decode_audio(path)
    assert abs(len(audio) / rate - result.duration_s) < 0.1 and result.duration_s > 8


class _SentenceEngine(TTSEngine):
    """A tone per sentence, made piece by piece; logs when each piece is made."""

    name = "sentence-test"
    sample_rate = 16000
    log: ClassVar[list[str]] = []

    @classmethod
    def languages(cls) -> frozenset[str]:
        return frozenset({"en"})

    def synthesize_pieces(self, text, request):
        for index, _sentence in enumerate(text.split(". ")):
            self.log.append(f"made {index}")
            t = np.arange(self.sample_rate // 2) / self.sample_rate
            yield (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)

    def synthesize_chunk(self, text, request):
        return np.concatenate(list(self.synthesize_pieces(text, request)))


def test_the_first_audio_is_handed_over_before_the_second_sentence_is_made(tmp_path):
    engine = _SentenceEngine()
    _SentenceEngine.log = []
    request = SpeechRequest(text="One. Two. Three.", language="en", format="mp3", on_audio=lambda data: _SentenceEngine.log.append("audio"))
    engine.run(request, lambda *_: None, tmp_path)
    log = _SentenceEngine.log
    assert log.index("audio") < log.index("made 1") < log.index("made 2")
    assert log.count("audio") >= 3


def test_streaming_does_not_change_the_output(tmp_path):
    tone = _SentenceEngine()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = tone.run(SpeechRequest(text="One. Two. Three.", language="en", format="ogg"), lambda *_: None, tmp_path / "a")
    streamed, parts = _streamed(tone, tmp_path / "b", text="One. Two. Three.", format="ogg")
    assert plain.path.read_bytes() == streamed.path.read_bytes() == b"".join(parts)


def test_with_voice_matching_the_audio_comes_once_the_matching_has_run(tmp_path):
    prompt = speech("en+f3")
    voice = VoiceReference(audio_path=encode(prompt, tmp_path / "prompt.wav"), embedding=tuple(speaker.embed(prompt)))
    stages: list[str] = []
    parts: list[bytes] = []

    def on_audio(data: bytes) -> None:
        stages.append("audio")
        parts.append(data)

    request = SpeechRequest(text=FIVE_SENTENCES, language="en", format="wav", voice=voice, on_audio=on_audio)
    result = get_engine("espeak").run(request, lambda _percent, stage: stages.append(stage), tmp_path)
    assert stages.index("audio") > stages.index("matching voice")
    assert b"".join(parts)[44:] == result.path.read_bytes()[44:]
