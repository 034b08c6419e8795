import wave

import numpy as np
import pytest

from engines.audio.dsp import join_chunks
from engines.audio.io import FORMATS, decode_audio, encode_audio, probe_duration

RATE = 22050


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_round_trips_through_a_real_decoder(tmp_path, fmt):
    path = tmp_path / f"out.{FORMATS[fmt].extension}"
    encode_audio(_tone(2.0), RATE, path, fmt)
    audio, rate = decode_audio(path)
    assert rate == (FORMATS[fmt].sample_rate or RATE)
    assert abs(len(audio) / rate - 2.0) < 0.08  # codec priming/padding only
    assert abs(probe_duration(path) - 2.0) < 0.08
    # The tone survives: over a 1 s window FFT bin k is k Hz, so the peak is at 440.
    spectrum = np.abs(np.fft.rfft(audio[rate // 4 : rate // 4 + rate]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2


def test_wav_is_16_bit_mono_pcm(tmp_path):
    path = tmp_path / "out.wav"
    encode_audio(_tone(0.5), RATE, path, "wav")
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        assert wav.getnframes() == int(RATE * 0.5)


def test_join_has_no_clicks_at_chunk_boundaries():
    # Chunks that end mid-waveform at full amplitude would click when butted together.
    chunks = [np.full(RATE // 2, 0.8, dtype=np.float32), np.full(RATE // 2, -0.8, dtype=np.float32)]
    joined = join_chunks(chunks, RATE)
    jumps = np.abs(np.diff(joined))
    assert jumps.max() < 0.05  # faded edges: no step anywhere
    assert joined[0] == 0.0 and joined[-1] == 0.0
    assert len(joined) > sum(len(c) for c in chunks)  # a pause was inserted
