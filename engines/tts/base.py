"""The TTS engine contract and the chunked synthesis loop all engines share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from engines.audio.dsp import join_chunks, rms_dbfs
from engines.audio.io import FORMATS, encode_audio, probe_duration
from engines.base import Engine
from engines.errors import PermanentEngineError
from engines.text import split_into_chunks

ProgressCallback = Callable[[int, str], None]

# Below this level the output is treated as silence (nothing was spoken).
SILENCE_DBFS = -60.0


@dataclass(frozen=True)
class VoiceReference:
    """A analysed voice prompt, as engines receive it."""

    audio_path: Path  # 16 kHz mono WAV, trimmed and level-normalized
    transcript: str = ""
    language: str = ""
    embedding: tuple[float, ...] = ()  # speaker embedding of the prompt (resemblyzer)


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    language: str
    format: str = "wav"
    speed: float = 1.0
    voice: VoiceReference | None = None
    instruct: str = ""  # style: emotion, speed, dialect (engines with "instruct" only)
    max_duration_s: float | None = None  # stop (permanent error) once the speech is longer


@dataclass(frozen=True)
class SpeechResult:
    path: Path
    format: str
    content_type: str
    sample_rate: int
    duration_s: float
    size_bytes: int
    chunks: int
    # With a voice: speaker_similarity (output vs prompt) and how the voice
    # was produced: "cloned" by the engine, or built-in "matching" applied/skipped.
    voice: dict | None = None


class TTSEngine(Engine, ABC):
    """A speech engine: ``load()`` once per process, ``run()`` per job.

    Subclasses implement ``synthesize_chunk``; the shared ``run`` splits the
    text at sentence boundaries, reports progress per chunk, joins the chunks
    without clicks and encodes the requested format.
    """

    name: ClassVar[str]
    sample_rate: ClassVar[int]
    max_chunk_chars: ClassVar[int] = 300
    # Request options this engine honours; others are refused at submit
    # ("unsupported_option"), never silently ignored.
    options: ClassVar[frozenset[str]] = frozenset({"speed", "voice"})
    # True: the engine itself speaks in the prompt's voice (zero-shot cloning).
    # False: built-in voice matching moves its output toward the prompt.
    clones_voice: ClassVar[bool] = False
    requires_voice: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def languages(cls) -> frozenset[str]:
        """Language codes this engine speaks. Must be cheap: no model load."""

    @classmethod
    def supports_language(cls, language: str) -> bool:
        return language.lower() in cls.languages()

    @abstractmethod
    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        """Synthesize one chunk to float32 mono samples at ``sample_rate``.
        ``request`` carries language, speed, voice and instruct."""

    def run(self, request: SpeechRequest, progress: ProgressCallback, workdir: Path) -> SpeechResult:
        self.load()
        chunks = split_into_chunks(request.text, self.max_chunk_chars)
        if not chunks:
            raise PermanentEngineError("The text contains nothing to speak.", code="empty_text")
        progress(5, "synthesizing")
        share = 85 if request.voice is None else 70  # the rest: matching and scoring
        pieces = []
        samples, max_samples = 0, request.max_duration_s and request.max_duration_s * self.sample_rate
        for index, chunk in enumerate(chunks, start=1):
            pieces.append(self.synthesize_chunk(chunk, request))
            samples += len(pieces[-1])
            if max_samples and samples > max_samples:  # bounded work, whatever the text
                raise PermanentEngineError(
                    f"The speech passed the limit of {request.max_duration_s:g} s per job.", code="duration_limit_exceeded"
                )
            progress(5 + (share * index) // len(chunks), "synthesizing")
        audio = join_chunks(pieces, self.sample_rate)
        if rms_dbfs(audio) < SILENCE_DBFS:
            raise PermanentEngineError("The engine produced no audible speech for this text.", code="no_speech_generated")
        voice_report = None
        if request.voice is not None:
            progress(5 + share, "matching voice" if not self.clones_voice else "scoring voice")
            audio, voice_report = self._in_voice(audio, request.voice)
        progress(92, "encoding")
        spec = FORMATS[request.format]
        path = workdir / f"speech.{spec.extension}"
        encode_audio(audio, self.sample_rate, path, spec.name)
        return SpeechResult(
            path=path,
            format=spec.name,
            content_type=spec.content_type,
            sample_rate=spec.sample_rate or self.sample_rate,
            duration_s=round(probe_duration(path), 3),
            size_bytes=path.stat().st_size,
            chunks=len(chunks),
            voice=voice_report,
        )

    def _in_voice(self, audio: np.ndarray, voice: VoiceReference) -> tuple[np.ndarray, dict]:
        """Score the output against the prompt; for engines that do not clone,
        apply voice matching first and keep it only when it brought the output
        closer to the prompt (WORLD resynthesis costs a little similarity, so
        a voice that already matches is better left alone)."""
        from engines.voice import matching, speaker

        prompt = _prompt_audio(voice) if not (voice.embedding and self.clones_voice) else None
        target = np.asarray(voice.embedding, dtype=np.float32) if voice.embedding else speaker.embed(prompt)
        before = speaker.similarity(speaker.embed(audio, self.sample_rate), target)
        if self.clones_voice:
            return audio, {"mode": "cloned", "speaker_similarity": round(before, 3)}
        try:
            matched = matching.match_voice(audio, self.sample_rate, matching.voice_profile(prompt))
        except ValueError:  # too little voiced speech on one side: nothing to match
            unmatched = round(before, 3)
            return audio, {
                "mode": "matching",
                "matching_applied": False,
                "speaker_similarity": unmatched,
                "speaker_similarity_unmatched": unmatched,
            }
        after = speaker.similarity(speaker.embed(matched, self.sample_rate), target)
        applied = after > before
        return (matched if applied else audio), {
            "mode": "matching",
            "matching_applied": applied,
            "speaker_similarity": round(max(after, before), 3),
            "speaker_similarity_unmatched": round(before, 3),
        }


def _prompt_audio(voice: VoiceReference) -> np.ndarray:
    from engines.audio.io import decode_audio
    from engines.voice.prompt import PROMPT_SAMPLE_RATE

    audio, _ = decode_audio(voice.audio_path, PROMPT_SAMPLE_RATE)
    return audio
