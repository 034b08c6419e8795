"""MP4 writing and probing (PyAV: its wheels ship libx264 and FFmpeg's AAC).

Durations are read back from the written file, never computed from what a
client sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # PyAV is imported lazily (workers only)
    from av.audio.stream import AudioStream
    from av.packet import Packet

AUDIO_RATE = 48000  # AAC's usual rate; every player handles it


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float  # the container's duration
    width: int
    height: int
    fps: float
    frames: int
    video_codec: str
    video_duration_s: float
    audio_codec: str | None
    audio_duration_s: float | None
    audio_start_s: float | None  # where the audio stream starts (offset vs video)


def probe_video(path: Path) -> VideoInfo:
    """Streams, codecs and durations of an MP4, from its headers. Raises
    ``ValueError`` when the file has no video stream."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        fps = float(video.average_rate or video.guessed_rate or 0)
        frames = video.frames or 0
        video_duration = float(video.duration * video.time_base) if video.duration and video.time_base else frames / fps if fps else 0.0
        return VideoInfo(
            duration_s=float(container.duration) / 1_000_000 if container.duration else video_duration,
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=fps,
            frames=frames,
            video_codec=video.codec_context.name,
            video_duration_s=video_duration,
            audio_codec=audio.codec_context.name if audio else None,
            # (A demuxed stream always has a time base; the stubs allow None.)
            audio_duration_s=float(audio.duration * audio.time_base) if audio is not None and audio.duration and audio.time_base else None,
            audio_start_s=(
                float(audio.start_time * audio.time_base)
                if audio is not None and audio.start_time is not None and audio.time_base
                else None
            ),
        )


def write_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int,
    size: int,
    audio: np.ndarray,
    audio_rate: int,
    crf: int = 23,
    preset: str = "veryfast",
) -> None:
    """Encode RGB uint8 frames (size x size x 3) as H.264 (yuv420p, faststart)
    and ``audio`` (float32 mono) as AAC into one MP4. Both streams start at 0."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "preset": preset}
        video.codec_context.time_base = Fraction(1, fps)
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        sound.codec_context.bit_rate = 96_000
        # Interleave: audio packets go in as the video reaches their time, so
        # a player streaming the file needs no seeks.
        pending = _audio_packets(sound, audio, audio_rate)
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
            # _audio_packets keeps only packets with a pts.
            while pending and pending[0].pts * sound.codec_context.time_base <= Fraction(index + 1, fps):  # type: ignore[operator]
                container.mux(pending.pop(0))
        container.mux(video.encode(None))
        container.mux(pending)


def _audio_packets(stream: AudioStream, audio: np.ndarray, rate: int) -> list[Packet[AudioStream]]:
    import av

    samples = np.clip(np.asarray(audio, dtype=np.float32), -1, 1)[np.newaxis, :]
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=AUDIO_RATE)
    packets = []
    for converted in resampler.resample(frame) + resampler.resample(None):
        packets.extend(stream.encode(converted))
    packets.extend(stream.encode(None))
    return [packet for packet in packets if packet.pts is not None]


def decode_frames(path: Path) -> Iterable[np.ndarray]:
    """The video's frames as RGB uint8 arrays (for quality checks)."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
