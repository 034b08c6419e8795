"""Audio encoding, decoding and probing.

WAV is written with the standard library (exact, no codec delay); MP3 and
Ogg/Opus go through PyAV, whose wheels ship libmp3lame and libopus. Durations
are always read back from the file, never computed from what a client said.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:  # PyAV is imported lazily (workers only)
    from av.audio.stream import AudioStream


@dataclass(frozen=True)
class AudioFormat:
    name: str
    extension: str
    content_type: str
    container: str
    codec: str
    sample_rate: int | None  # None: keep the engine's rate


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "wav", "audio/wav", "wav", "pcm_s16le", None),
    "mp3": AudioFormat("mp3", "mp3", "audio/mpeg", "mp3", "libmp3lame", None),
    # Opus only runs at 8/12/16/24/48 kHz; 48 kHz is its native rate.
    "ogg": AudioFormat("ogg", "ogg", "audio/ogg", "ogg", "libopus", 48000),
}


def encode_audio(samples: np.ndarray, sample_rate: int, path: Path, fmt: str) -> None:
    """Write float32 mono samples in [-1, 1] to ``path`` in format ``fmt``."""
    spec = FORMATS[fmt]
    audio = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    if spec.name == "wav":
        _write_wav(audio, sample_rate, path)
    else:
        _encode_with_av(audio, sample_rate, path, spec)


def _write_wav(audio: np.ndarray, sample_rate: int, path: Path) -> None:
    pcm = (audio * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _encode_with_av(audio: np.ndarray, sample_rate: int, path: Path, spec: AudioFormat) -> None:
    import av  # lazy: only workers encode

    rate = spec.sample_rate or sample_rate
    with av.open(str(path), "w", format=spec.container) as container:
        stream = cast("AudioStream", container.add_stream(spec.codec, rate=rate, layout="mono"))  # FORMATS holds audio codecs
        frame = av.AudioFrame.from_ndarray(audio[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=rate)
        # PyAV re-frames to the codec's frame size (1152 for MP3, 960 for Opus).
        for converted in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))


def decode_audio(path: Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode any audio file PyAV understands to float32 mono samples."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        rate = sample_rate or stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pieces: list[np.ndarray] = []
        for frame in container.decode(stream):
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return audio.astype(np.float32, copy=False), rate


def probe_duration(path: Path) -> float:
    """Duration in seconds from the container, falling back to the stream."""
    import av

    with av.open(str(path)) as container:
        if container.duration is not None:
            return float(container.duration) / 1_000_000.0
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
    audio, rate = decode_audio(path)
    return len(audio) / rate
