"""Real speech for voice tests: espeak-ng and piper voices (different
speakers), encoded with PyAV to every upload format clients send."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import cast

import av
import numpy as np

from engines.audio.dsp import resample
from engines.audio.io import encode_audio

RATE = 16000
PROMPT_TEXT = (
    "Please call Stella. Ask her to bring these things with her from the store: "
    "six spoons of fresh snow peas, five thick slabs of blue cheese."
)
# container, codec, sample rate
FORMATS = {
    "wav": None,
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
    "webm": ("webm", "libopus", 48000),
}


@functools.cache
def speech(voice: str = "piper", text: str = PROMPT_TEXT) -> np.ndarray:
    """16 kHz mono speech. ``voice``: "piper", or an espeak-ng voice name
    with an optional variant ("en", "en+f3", "en+m7", ...)."""
    if voice == "piper":
        from piper import SynthesisConfig

        from engines.registry import get_engine

        engine = get_engine("piper")
        engine.load()
        # Without piper's sampling noise: the same text gives the same samples
        # on every run, so a threshold on a measure of this audio cannot flake.
        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        chunks = engine._voice.synthesize(text, syn_config=config)
        audio = np.concatenate([chunk.audio_float_array for chunk in chunks])
        return resample(audio, engine.sample_rate, RATE)
    return resample(_espeak_variant(text, voice), 22050, RATE)


def _espeak_variant(text: str, voice: str) -> np.ndarray:
    from engines.registry import get_engine
    from engines.tts.espeak import _Native

    engine = get_engine("espeak")
    data = text.encode()
    with _Native.lock:
        _Native.samples = []
        assert engine._lib.espeak_SetVoiceByName(voice.encode()) == 0, voice
        engine._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)
        engine._lib.espeak_Synchronize()
        samples, _Native.samples = _Native.samples, []
    return np.concatenate(samples).astype(np.float32) / 32768.0


def padded(audio: np.ndarray, seconds: float = 0.5) -> np.ndarray:
    silence = np.zeros(int(seconds * RATE), np.float32)
    return np.concatenate([silence, audio, silence])


def encode(audio: np.ndarray, path: Path, fmt: str = "wav") -> Path:
    """Write 16 kHz mono ``audio`` as ``fmt`` (the file name's extension is
    whatever the caller chose: servers must not trust it)."""
    spec = FORMATS[fmt]
    if spec is None:
        encode_audio(audio, RATE, path, "wav")
        return path
    container_format, codec, rate = spec
    with av.open(str(path), "w", format=container_format) as container:
        stream = cast(av.AudioStream, container.add_stream(codec, rate=rate, layout="mono"))
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1)[np.newaxis, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=rate)
        for converted in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return path
