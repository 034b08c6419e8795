"""Audio encoding, decoding and probing.

Every format is encoded incrementally by ``AudioEncoder``: blocks of samples
go in as they become final and their encoded bytes come out at once, so a
job can stream its audio while it is made. ``encode_audio`` (a whole file at
once) is the same encoder writing to a file, so a streamed job and a
non-streamed one store the same bytes.

The encoded bytes are one valid file when concatenated. Only WAV needs a
fix-up afterwards: its header holds two sizes that a stream cannot know in
advance, so a streamed WAV carries the placeholder 0xFFFFFFFF there (as
streaming servers do; decoders read to the end) and the stored file has the
real sizes written back (``finish_file``). Every other byte is the same.

WAV and PCM are written here (exact, no codec delay); MP3, AAC (ADTS), FLAC
and Ogg/Opus go through PyAV, whose wheels ship libmp3lame and libopus, with
the muxer flushing after every packet and never seeking back (no Xing/LAME
header in MP3, FLAC's STREAMINFO without the total length). Durations are
always read back from the file, never computed from what a client said.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:  # PyAV is imported lazily (workers only)
    from av.audio.resampler import AudioResampler
    from av.audio.stream import AudioStream
    from av.container import OutputContainer

Sink = Callable[[bytes], Any]


@dataclass(frozen=True)
class AudioFormat:
    name: str
    extension: str
    content_type: str
    container: str  # FFmpeg muxer; "" for the formats written here (wav, pcm)
    codec: str
    sample_rate: int | None  # None: keep the engine's rate
    muxer_options: dict[str, str] = field(default_factory=dict)


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "wav", "audio/wav", "", "pcm_s16le", None),
    "mp3": AudioFormat("mp3", "mp3", "audio/mpeg", "mp3", "libmp3lame", None, {"write_xing": "0", "id3v2_version": "0"}),
    # Opus only runs at 8/12/16/24/48 kHz; 48 kHz is its native rate. Pages of
    # at most ~60 ms of packets, so a stream is never held back by a full page.
    "ogg": AudioFormat("ogg", "ogg", "audio/ogg", "ogg", "libopus", 48000, {"page_duration": "60000"}),
    "flac": AudioFormat("flac", "flac", "audio/flac", "flac", "flac", None),
    "aac": AudioFormat("aac", "aac", "audio/aac", "adts", "aac", None),
    # Raw signed 16-bit little-endian mono at 24 kHz, as OpenAI's "pcm".
    "pcm": AudioFormat("pcm", "pcm", "audio/pcm", "", "pcm_s16le", 24000),
}

_WAV_HEADER_BYTES = 44
_UNKNOWN_SIZE = 0xFFFFFFFF


class AudioEncoder:
    """Encode float32 mono blocks in [-1, 1] incrementally into ``sink``.

    ``write`` hands every byte it can to the sink before returning (codecs
    keep at most one frame back); ``close`` flushes the rest. The same
    sequence of blocks always gives the same bytes.
    """

    def __init__(self, fmt: str, sample_rate: int, sink: Sink) -> None:
        self.spec = FORMATS[fmt]
        self.sample_rate = sample_rate
        self.output_rate = self.spec.sample_rate or sample_rate
        self._sink = sink
        self._container: OutputContainer | None = None
        self._stream: AudioStream | None = None
        self._resampler: AudioResampler | None = None
        if self.spec.name == "wav":
            sink(_wav_header(sample_rate, _UNKNOWN_SIZE))
        elif self.spec.name == "pcm":
            self._resampler = _resampler("s16", self.output_rate)
        else:
            self._open_container()

    def _open_container(self) -> None:
        import av  # lazy: only workers encode

        # bitexact: no random Ogg serial or version strings, so the same
        # blocks always give the same bytes.
        options = {"flush_packets": "1", "fflags": "+bitexact", **self.spec.muxer_options}
        self._container = av.open(_SinkFile(self._sink), "w", format=self.spec.container, options=options)
        # FORMATS holds audio codecs only.
        self._stream = cast("AudioStream", self._container.add_stream(self.spec.codec, rate=self.output_rate, layout="mono"))
        self._resampler = _resampler(self._stream.codec_context.format.name, self.output_rate)

    def write(self, samples: np.ndarray) -> None:
        audio = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if audio.size == 0:
            return
        if self.spec.name == "wav":
            self._sink(_pcm16(audio).tobytes())
            return
        import av

        frame = av.AudioFrame.from_ndarray(audio[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        self._encode(frame)

    def close(self) -> None:
        if self.spec.name != "wav":
            self._encode(None)
        if self._container is not None and self._stream is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()

    def _encode(self, frame: Any) -> None:
        assert self._resampler is not None
        for converted in self._resampler.resample(frame):
            if self._stream is None:  # pcm: the resampled samples are the bytes
                self._sink(bytes(converted.to_ndarray().astype("<i2").tobytes()))
            else:
                assert self._container is not None
                # PyAV re-frames to the codec's frame size (1152 for MP3, 960 for Opus).
                self._container.mux(self._stream.encode(converted))


class _SinkFile:
    """The write-only, unseekable file PyAV writes a container into."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink(bytes(data))
        return len(data)


def _resampler(sample_format: str, rate: int) -> AudioResampler:
    import av

    return av.AudioResampler(format=sample_format, layout="mono", rate=rate)


def _pcm16(audio: np.ndarray) -> np.ndarray:
    pcm: np.ndarray = (audio * 32767.0).round().astype("<i2")
    return pcm


def _wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """The 44-byte header of 16-bit mono PCM WAV (what the wave module writes)."""
    riff_bytes = _UNKNOWN_SIZE if data_bytes == _UNKNOWN_SIZE else 36 + data_bytes
    fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return struct.pack("<4sI4s", b"RIFF", riff_bytes, b"WAVE") + fmt_chunk + struct.pack("<4sI", b"data", data_bytes)


def finish_file(path: Path, fmt: str, sample_rate: int) -> None:
    """Write what a stream could not know into a stored file: WAV's sizes."""
    if FORMATS[fmt].name != "wav":
        return
    data_bytes = path.stat().st_size - _WAV_HEADER_BYTES
    with path.open("r+b") as out:
        out.write(_wav_header(sample_rate, data_bytes))


def encode_audio(samples: np.ndarray, sample_rate: int, path: Path, fmt: str) -> None:
    """Write float32 mono samples in [-1, 1] to ``path`` in format ``fmt``."""
    with path.open("wb") as out:
        encoder = AudioEncoder(fmt, sample_rate, out.write)
        encoder.write(samples)
        encoder.close()
    finish_file(path, fmt, sample_rate)


def _open_input(path: Path | str) -> Any:
    import av

    path = Path(path)
    if path.suffix == "." + FORMATS["pcm"].extension:  # raw: no header to say what it is
        rate = str(FORMATS["pcm"].sample_rate)
        return av.open(str(path), format="s16le", options={"sample_rate": rate, "ch_layout": "mono"})
    return av.open(str(path))


def decode_audio(path: Path | str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode any audio file PyAV understands (and our raw .pcm) to float32 mono samples."""
    import av

    with _open_input(path) as container:
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


# Containers whose duration is exact from the header or the last page; the
# rest (ADTS and header-less MP3 estimate it from the bitrate, a streamed
# FLAC does not carry it) are decoded and counted.
_EXACT_DURATION = frozenset({"wav", "ogg"})


def probe_duration(path: Path | str) -> float:
    """Duration in seconds from the file: the container's where it is exact,
    else the decoded samples."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    if fmt == FORMATS["pcm"].extension:
        return path.stat().st_size / 2 / float(FORMATS["pcm"].sample_rate or 1)
    if fmt in _EXACT_DURATION:
        import av

        with av.open(str(path)) as container:
            if container.duration is not None:
                return float(container.duration) / 1_000_000.0
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    audio, rate = decode_audio(path)
    return len(audio) / rate
