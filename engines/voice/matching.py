"""Voice matching: move a synthesized voice's pitch and timbre toward a voice
prompt with the WORLD vocoder (pyworld). This is matching, not cloning: the
output keeps the engine's articulation and prosody; its pitch range and
spectral envelope (vocal-tract length, brightness) follow the prompt.

Steps: analyse both with WORLD (F0, spectral envelope, aperiodicity); map the
output's log-F0 onto the prompt's mean and spread; pick the frequency warp
that best aligns the mean envelopes (vocal-tract length); then correct what
remains with a smooth equalizer; resynthesize.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.voice.prompt import PROMPT_SAMPLE_RATE

FRAME_PERIOD_MS = 5.0
WARP_FACTORS = np.round(np.arange(0.80, 1.26, 0.02), 2)  # >1 moves formants up
MATCH_BAND_HZ = (80.0, 7000.0)  # the prompt is 16 kHz: nothing above 8 kHz to match
MAX_EQ_DB = 10.0
EQ_LIFTER = 24  # cepstral coefficients kept: a smooth correction, not a copy of the prompt's words
SPREAD_LIMITS = (0.5, 2.0)


@dataclass(frozen=True)
class VoiceProfile:
    log_f0_mean: float
    log_f0_std: float
    freqs_hz: np.ndarray
    log_envelope: np.ndarray  # mean log spectral envelope of voiced frames


def _world(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pyworld

    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    return f0, envelope, aperiodicity


def _profile(f0: np.ndarray, envelope: np.ndarray, sample_rate: int) -> VoiceProfile:
    voiced = f0 > 0
    if voiced.sum() < 10:
        raise ValueError("too little voiced speech to match")
    log_f0 = np.log(f0[voiced])
    freqs = np.linspace(0, sample_rate / 2, envelope.shape[1])
    return VoiceProfile(
        log_f0_mean=float(log_f0.mean()),
        log_f0_std=float(log_f0.std()),
        freqs_hz=freqs,
        log_envelope=np.log(envelope[voiced]).mean(axis=0),
    )


def voice_profile(prompt: np.ndarray, sample_rate: int = PROMPT_SAMPLE_RATE) -> VoiceProfile:
    f0, envelope, _ = _world(prompt, sample_rate)
    return _profile(f0, envelope, sample_rate)


def _band(freqs: np.ndarray) -> np.ndarray:
    return (freqs >= MATCH_BAND_HZ[0]) & (freqs <= MATCH_BAND_HZ[1])


def _warped(log_envelope: np.ndarray, freqs: np.ndarray, factor: float) -> np.ndarray:
    """The envelope with its frequency axis stretched by ``factor``
    (works on the last axis, for one frame or a matrix of frames)."""
    source = freqs / factor
    if log_envelope.ndim == 1:
        return np.interp(source, freqs, log_envelope)
    return np.stack([np.interp(source, freqs, row) for row in log_envelope])


def _best_warp(source: VoiceProfile, target_on_source: np.ndarray) -> float:
    band = _band(source.freqs_hz)

    def distance(factor: float) -> float:
        difference = _warped(source.log_envelope, source.freqs_hz, factor)[band] - target_on_source[band]
        return float(np.var(difference))  # level differences do not count, shape does

    return float(min(WARP_FACTORS, key=distance))


def _smooth_eq(difference: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """A smooth log-gain curve from a raw envelope difference: cepstrally
    liftered, limited, and faded out above the band the prompt covers."""
    band = _band(freqs)
    filled = np.where(band, difference, 0.0)
    filled[band] -= filled[band].mean()
    cepstrum = np.fft.irfft(filled)
    cepstrum[EQ_LIFTER:-EQ_LIFTER] = 0.0
    smooth = np.fft.rfft(cepstrum).real[: freqs.size]
    limit = MAX_EQ_DB / 20 * np.log(10)
    fade = np.clip((MATCH_BAND_HZ[1] + 1000 - freqs) / 1000, 0.0, 1.0)
    return np.clip(smooth, -limit, limit) * fade


def match_voice(audio: np.ndarray, sample_rate: int, target: VoiceProfile) -> np.ndarray:
    """``audio`` (float32 mono) re-voiced toward ``target``; same length and level."""
    import pyworld

    f0, envelope, aperiodicity = _world(audio, sample_rate)
    source = _profile(f0, envelope, sample_rate)
    spread = np.clip(target.log_f0_std / max(source.log_f0_std, 1e-3), *SPREAD_LIMITS)
    voiced = f0 > 0
    new_f0 = f0.copy()
    new_f0[voiced] = np.exp((np.log(f0[voiced]) - source.log_f0_mean) * spread + target.log_f0_mean)

    target_on_source = np.interp(source.freqs_hz, target.freqs_hz, target.log_envelope)
    factor = _best_warp(source, target_on_source)
    log_envelope = _warped(np.log(envelope), source.freqs_hz, factor)
    remaining = target_on_source - _warped(source.log_envelope, source.freqs_hz, factor)
    log_envelope += _smooth_eq(remaining, source.freqs_hz)

    out = pyworld.synthesize(new_f0, np.ascontiguousarray(np.exp(log_envelope)), aperiodicity, sample_rate, FRAME_PERIOD_MS)
    out = out[: audio.size].astype(np.float32)
    return _level_matched(out, audio)


def _level_matched(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    reference_rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    out_rms = float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
    if out_rms > 0:
        out = out * (reference_rms / out_rms)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return (out * (0.99 / peak) if peak > 0.99 else out).astype(np.float32)
