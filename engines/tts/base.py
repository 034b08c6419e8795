"""The TTS engine contract and the chunked synthesis loop all engines share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

from engines.audio.dsp import GAP_S, ChunkJoiner, rms_dbfs
from engines.audio.io import FORMATS, AudioEncoder, finish_file, probe_duration
from engines.base import Engine
from engines.errors import PermanentEngineError
from engines.text import split_into_chunks
from engines.voice.gate import WER_MAX_AUDIO_S, Excerpt

ProgressCallback = Callable[[int, str], None]
# Receives the encoded audio as it is made: the calls' bytes, concatenated,
# are the result file (for WAV, but for the two sizes in its header: see
# engines/audio/io.py). It must not raise.
AudioCallback = Callable[[bytes], None]

# Below this level the output is treated as silence (nothing was spoken).
SILENCE_DBFS = -60.0
# SpeechRequest.voice_matching: "auto" matches built-in engines' output to the
# voice prompt when that helps (see engines/voice/gate.py); "off" never does.
VOICE_MATCHING_MODES = ("auto", "off")


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
    # "auto": built-in engines (clones_voice False) move their output toward
    # the voice prompt, kept only when it helps and stays intelligible.
    # "off": never; the audio is exactly the engine's own (still scored).
    voice_matching: str = "auto"
    # Called with the encoded audio as it becomes final: sentence by sentence
    # without voice matching; all at once after it (matching changes the
    # whole speech, so nothing is final before it has run). Not part of what
    # the request is (compare=False): a streamed request is the same request.
    on_audio: AudioCallback | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SpeechResult:
    """What a speech engine made.

    ``voice`` (with a voice prompt, else None): how the voice was produced.
      mode                          "cloned" (the engine speaks in the prompt's voice)
                                    or "matching" (built-in voice matching)
      speaker_similarity            delivered output vs the prompt (cosine, -1..1)
      matching_applied              ("matching") whether the matched audio was kept
      speaker_similarity_unmatched  ("matching") the engine's own output vs the prompt
      matching_strength             (applied) strength of the matching kept, 1.0 = all the way
      reason                        (not applied) "off" (voice_matching "off"),
                                    "similarity" (not closer to the prompt),
                                    "intelligibility" (words lost: WER rose past the
                                    tolerance), "no_voiced_speech" (nothing to match)

    ``quality``: measures computed for this output, by key; absent = not
    computed. Speech with a voice prompt gets speaker_similarity; with
    voice_matching "auto" on an engine that matches (not clones), the
    matching's measures too. {} without a voice prompt. The WER is measured
    only where it decides (similarity rose): see engines/voice/gate.py.
      speaker_similarity            delivered output vs the prompt (cosine, -1..1)
      speaker_similarity_unmatched  the engine's own output vs the prompt
      speaker_similarity_matched    the matched candidate vs the prompt: the one kept,
                                    else the last one tried
      wer                           word error rate of the delivered output against the
                                    text (pocketsphinx; 0 = every word recognized, may
                                    exceed 1); None: no recognizer for the language
      wer_unmatched, wer_matched    the same for the engine's own output and the candidate
      wer_measured_s                seconds of audio the WERs were measured on: the
                                    leading chunks, up to gate.WER_MAX_AUDIO_S
      matching_strength             (applied) strength of the matching kept
      matching_attempts             [{strength, speaker_similarity, wer}] per matching
                                    tried (wer None: not measured)
    """

    path: Path
    format: str
    content_type: str
    sample_rate: int
    duration_s: float
    size_bytes: int
    chunks: int
    voice: dict[str, Any] | None = None
    quality: dict[str, Any] = field(default_factory=dict)


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

    def synthesize_pieces(self, text: str, request: SpeechRequest) -> Iterator[np.ndarray]:
        """The chunk's audio in pieces as they are made (engines that make a
        chunk sentence by sentence yield each): their concatenation is the
        chunk. Default: the whole chunk at once."""
        yield self.synthesize_chunk(text, request)

    def run(self, request: SpeechRequest, progress: ProgressCallback, workdir: Path) -> SpeechResult:
        if request.voice_matching not in VOICE_MATCHING_MODES:
            raise PermanentEngineError(f"voice_matching must be one of {', '.join(VOICE_MATCHING_MODES)}.", code="invalid_voice_matching")
        self.load()
        chunks = split_into_chunks(request.text, self.max_chunk_chars)
        if not chunks:
            raise PermanentEngineError("The text contains nothing to speak.", code="empty_text")
        progress(5, "synthesizing")
        share = 85 if request.voice is None else 70  # the rest: matching and scoring
        matches = request.voice is not None and not self.clones_voice and request.voice_matching == "auto"
        spec = FORMATS[request.format]
        path = workdir / f"speech.{spec.extension}"
        try:
            with path.open("wb") as out:
                output = _Output(out, spec.name, self.sample_rate, request.on_audio, hold=matches)
                pieces = self._synthesize(chunks, request, progress, share, output)
                audio = output.audio()
                if rms_dbfs(audio) < SILENCE_DBFS:
                    raise PermanentEngineError("The engine produced no audible speech for this text.", code="no_speech_generated")
                voice_report = None
                quality: dict[str, Any] = {}
                if request.voice is not None:
                    progress(5 + share, "matching voice" if matches else "scoring voice")
                    matched, voice_report, quality = self._in_voice(audio, request, _excerpt(chunks, pieces, self.sample_rate))
                    if matches:
                        output.release(matched)
                progress(92, "encoding")
                output.close()
        except BaseException:
            path.unlink(missing_ok=True)  # no half-written output is left behind
            raise
        finish_file(path, spec.name, self.sample_rate)
        return SpeechResult(
            path=path,
            format=spec.name,
            content_type=spec.content_type,
            sample_rate=spec.sample_rate or self.sample_rate,
            duration_s=round(probe_duration(path), 3),
            size_bytes=path.stat().st_size,
            chunks=len(chunks),
            voice=voice_report,
            quality=quality,
        )

    def _synthesize(
        self, chunks: list[str], request: SpeechRequest, progress: ProgressCallback, share: int, output: _Output
    ) -> list[np.ndarray]:
        """Synthesize every chunk into ``output``, joined as ``join_chunks``
        joins them; returns each chunk's samples."""
        joiner = ChunkJoiner(self.sample_rate)
        pieces: list[np.ndarray] = []
        samples, max_samples = 0, request.max_duration_s and request.max_duration_s * self.sample_rate
        for index, chunk in enumerate(chunks, start=1):
            output.write(joiner.start_chunk())
            parts = []
            for piece in self.synthesize_pieces(chunk, request):
                parts.append(piece)
                samples += len(piece)
                if max_samples and samples > max_samples:  # bounded work, whatever the text
                    raise PermanentEngineError(
                        f"The speech passed the limit of {request.max_duration_s:g} s per job.", code="duration_limit_exceeded"
                    )
                output.write(joiner.add(piece))
            output.write(joiner.end_chunk())
            pieces.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32))
            progress(5 + (share * index) // len(chunks), "synthesizing")
        return pieces

    def _in_voice(self, audio: np.ndarray, request: SpeechRequest, excerpt: Excerpt) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
        """Score the output against the prompt; for engines that do not clone,
        with voice_matching "auto", apply voice matching first and keep it
        only when it brought the output closer to the prompt and kept it
        intelligible (engines/voice/gate.py)."""
        from engines.voice import gate, speaker

        voice = request.voice
        assert voice is not None
        matches = not self.clones_voice and request.voice_matching == "auto"
        prompt = _prompt_audio(voice) if matches or not voice.embedding else None
        if voice.embedding:
            target = np.asarray(voice.embedding, dtype=np.float32)
        else:
            assert prompt is not None
            target = speaker.embed(prompt)
        if matches:
            assert prompt is not None
            outcome = gate.match_gated(audio, self.sample_rate, prompt=prompt, target=target, language=request.language, excerpt=excerpt)
            return outcome.audio, outcome.voice, outcome.quality
        similarity = round(speaker.similarity(speaker.embed(audio, self.sample_rate), target), 3)
        if self.clones_voice:
            return audio, {"mode": "cloned", "speaker_similarity": similarity}, {"speaker_similarity": similarity}
        report = {
            "mode": "matching",
            "matching_applied": False,
            "reason": "off",
            "speaker_similarity": similarity,
            "speaker_similarity_unmatched": similarity,
        }
        return audio, report, {"speaker_similarity": similarity, "speaker_similarity_unmatched": similarity}


def _excerpt(chunks: list[str], pieces: list[np.ndarray], sample_rate: int) -> Excerpt:
    """The leading chunks up to WER_MAX_AUDIO_S of audio (at least one), laid
    out as ``join_chunks`` joins them (chunk, gap, chunk...)."""
    gap = int(sample_rate * GAP_S)
    end, texts = 0, []
    for index, (text, piece) in enumerate(zip(chunks, pieces, strict=True)):
        start = end + (gap if index else 0)
        if index and (start + len(piece)) / sample_rate > WER_MAX_AUDIO_S:
            break
        end = start + len(piece)
        texts.append(text)
    return Excerpt(text=" ".join(texts), end=end)


def _prompt_audio(voice: VoiceReference) -> np.ndarray:
    from engines.audio.io import decode_audio
    from engines.voice.prompt import PROMPT_SAMPLE_RATE

    audio, _ = decode_audio(voice.audio_path, PROMPT_SAMPLE_RATE)
    return audio


class _Output:
    """The speech on its way to the file: samples are kept (the whole speech
    is checked and scored at the end) and, unless held for voice matching,
    encoded at once, the bytes going to the file and to the request's audio
    callback (once per block written, not per codec packet)."""

    def __init__(self, out: BinaryIO, fmt: str, sample_rate: int, on_audio: AudioCallback | None, *, hold: bool) -> None:
        self._out = out
        self._on_audio = on_audio
        self._hold = hold
        self._blocks: list[np.ndarray] = []
        self._pending: list[bytes] = []
        self._encoder = AudioEncoder(fmt, sample_rate, self._sink)

    def _sink(self, data: bytes) -> None:
        self._out.write(data)
        if self._on_audio is not None:
            self._pending.append(data)

    def write(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        self._blocks.append(samples)
        if not self._hold:
            self._encoder.write(samples)
            self._publish()

    def audio(self) -> np.ndarray:
        return np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.float32)

    def release(self, audio: np.ndarray) -> None:
        """The held speech, final at last (voice matching has run)."""
        self._encoder.write(audio)

    def close(self) -> None:
        self._encoder.close()
        self._publish()

    def _publish(self) -> None:
        if self._pending and self._on_audio is not None:
            data = b"".join(self._pending)
            self._pending.clear()
            self._on_audio(data)
