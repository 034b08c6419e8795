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
    # Codec priming/padding only: at most two AAC frames (2 x 1024 samples, 93 ms at 22.05 kHz).
    assert abs(len(audio) / rate - 2.0) < 0.1
    assert abs(probe_duration(path) - 2.0) < 0.1
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


def _encode_in_blocks(audio: np.ndarray, fmt: str, blocks: int) -> list[bytes]:
    from engines.audio.io import AudioEncoder

    parts: list[bytes] = []
    encoder = AudioEncoder(fmt, RATE, parts.append)
    for block in np.array_split(audio, blocks):
        before = len(parts)
        encoder.write(block)
        if fmt != "ogg" or len(block) > RATE // 10:  # every write of real length yields bytes at once
            assert len(parts) > before
    encoder.close()
    return parts


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_incremental_encoding_is_one_valid_file_equal_to_the_stored_one(tmp_path, fmt):
    audio = _tone(1.5)
    path = tmp_path / f"whole.{FORMATS[fmt].extension}"
    encode_audio(audio, RATE, path, fmt)
    streamed = b"".join(_encode_in_blocks(audio, fmt, blocks=5))
    stored = path.read_bytes()
    if fmt == "wav":  # the stream cannot know the sizes: placeholders, the stored file has them
        assert streamed[44:] == stored[44:]
        assert streamed[4:8] == streamed[40:44] == b"\xff\xff\xff\xff"
        assert stored[40:44] == (len(stored) - 44).to_bytes(4, "little")
    else:
        assert streamed == stored
    streamed_path = tmp_path / f"streamed.{FORMATS[fmt].extension}"
    streamed_path.write_bytes(streamed)
    decoded, rate = decode_audio(streamed_path)
    assert abs(len(decoded) / rate - 1.5) < 0.1


def test_pcm_is_raw_16_bit_at_24_khz(tmp_path):
    path = tmp_path / "out.pcm"
    encode_audio(_tone(1.0), RATE, path, "pcm")
    data = path.read_bytes()
    assert abs(len(data) / 2 - 24000) <= 64  # 1 s at 24 kHz, 2 bytes a sample, no header
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0
    assert 0.45 < np.abs(samples).max() < 0.55
    spectrum = np.abs(np.fft.rfft(samples[6000:30000][:24000], n=24000))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2
