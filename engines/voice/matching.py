"""Voice matching: move a synthesized voice's pitch and timbre toward a voice
prompt with the WORLD vocoder (pyworld). This is matching, not cloning: the
output keeps the engine's articulation and prosody; its pitch range and
spectral envelope (vocal-tract length, brightness) follow the prompt.

Steps: analyse both with WORLD (F0, spectral envelope, aperiodicity); map the
output's log-F0 onto the prompt's median and spread; pick the frequency warp
that best aligns the mean envelopes (vocal-tract length); then correct what
remains with a smooth equalizer; resynthesize.

Every knob lives in ``MatchSettings``. ``DEFAULT_SETTINGS`` were chosen on
speaker similarity *and* the word error rate of pocketsphinx
(engines/voice/intelligibility.py), with bench/voice_similarity.py and 15
two-sentence piper texts (Harvard lists 2-4), where WER moved (mean, vs the
unmatched speech):
- WORLD analysis-resynthesis alone (nothing changed): +0.11 at 5 ms frames
  with pyworld's default F0 search (71-800 Hz), +0.05..0.06 at 2.5 ms frames
  and a 60-500 Hz search (harvest instead of dio: no better, 4x slower).
- warps alone, against plain resynthesis (47 s of piper speech): formants
  down cost much more than up: 0.90 +0.26..0.31, 0.95 +0.08..0.09,
  1.05..1.25 -0.06..+0.04. Yet in full matchings, the warps chosen past 1.16
  (toward espeak en+f3 and en+f5: 1.22-1.24) cost piper +0.06..+0.2 for
  little similarity.
- toward espeak en+f3 / en+f5 / en: +0.12 / +0.10 / +0.04 with
  LEGACY_SETTINGS, +0.02 / +0.03 / +0.04 with DEFAULT_SETTINGS (similarity
  gains +0.25 / +0.19 / +0.14 and +0.19 / +0.19 / +0.14).
- a robust F0 spread: the espeak en+klatt2 prompt's F0 track has octave
  errors (std of log-F0 0.50 against ~0.1-0.2 for the others), which made
  the old mapping double the output's pitch excursions.
The equalizer's limit (10 dB) stays: 6 dB cost similarity and saved no WER.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engines.voice.prompt import PROMPT_SAMPLE_RATE

FloatArray = npt.NDArray[np.floating]

MATCH_BAND_HZ = (80.0, 7000.0)  # the prompt is 16 kHz: nothing above 8 kHz to match
# CheapTrick's FFT size follows its F0 floor: pyworld's default 71 Hz gives
# 1024 points at 22.05 kHz; 60 Hz doubles it (and the analysis time) for no
# measured change in WER.
ENVELOPE_F0_FLOOR_HZ = 71.0


@dataclass(frozen=True)
class MatchSettings:
    """How far matching may move a voice. Wider limits buy similarity and
    cost intelligibility; the defaults are the measured compromise."""

    # The frequency warp (>1 moves formants up) that best aligns the mean
    # envelopes is searched over warp_search, then limited to warp_range.
    # Searching only the allowed range picks a boundary or a weaker minimum
    # on the wrong side, by chance (toward espeak en+f3, one piper take in six
    # got 0.92 instead of 1.16: similarity +0.11 instead of +0.22, WER +0.34).
    warp_search: tuple[float, float] = (0.80, 1.30)
    warp_range: tuple[float, float] = (0.92, 1.16)
    warp_step: float = 0.02
    max_eq_db: float = 10.0
    eq_lifter: int = 24  # cepstral coefficients kept: a smooth correction, not a copy of the prompt's words
    spread_limits: tuple[float, float] = (0.75, 1.33)  # how much the F0 spread may be scaled
    robust_f0: bool = True  # median and inter-quartile spread of log-F0 (octave errors do not count)
    frame_period_ms: float = 2.5  # WORLD's analysis hop
    f0_range_hz: tuple[float, float] = (60.0, 500.0)  # speaking voices; a narrower search errs less
    strength: float = 1.0  # 0: no change, 1: all the way to the prompt (F0, warp and EQ alike)

    def warp_factors(self) -> FloatArray:
        low, high = self.warp_search
        return np.round(np.arange(low, high + self.warp_step / 2, self.warp_step), 3)


DEFAULT_SETTINGS = MatchSettings()
# What matching was before intelligibility was measured (for the bench's comparison).
LEGACY_SETTINGS = MatchSettings(
    warp_search=(0.80, 1.24),
    warp_range=(0.80, 1.24),
    spread_limits=(0.5, 2.0),
    robust_f0=False,
    frame_period_ms=5.0,
    f0_range_hz=(71.0, 800.0),  # pyworld's defaults
)


@dataclass(frozen=True)
class VoiceProfile:
    log_f0_mean: float  # the median with robust_f0
    log_f0_std: float  # inter-quartile range / 1.349 with robust_f0
    freqs_hz: FloatArray
    log_envelope: FloatArray  # mean log spectral envelope of voiced frames


@dataclass(frozen=True)
class WorldAnalysis:
    """WORLD's parameters of one signal; analyse once, synthesize many times."""

    f0: FloatArray
    envelope: FloatArray
    aperiodicity: FloatArray
    sample_rate: int
    size: int  # samples in the analysed signal
    frame_period_ms: float


def analyze(audio: FloatArray, sample_rate: int, settings: MatchSettings | None = None) -> WorldAnalysis:
    import pyworld

    settings = settings or DEFAULT_SETTINGS
    frame_period = settings.frame_period_ms
    (floor, ceiling) = settings.f0_range_hz
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, f0_floor=floor, f0_ceil=ceiling, frame_period=frame_period)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    fft_size = pyworld.get_cheaptrick_fft_size(sample_rate, max(floor, ENVELOPE_F0_FLOOR_HZ))
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate, f0_floor=floor, fft_size=fft_size)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate, fft_size=fft_size)
    return WorldAnalysis(
        f0=f0, envelope=envelope, aperiodicity=aperiodicity, sample_rate=sample_rate, size=x.size, frame_period_ms=frame_period
    )


def _profile(f0: FloatArray, envelope: FloatArray, sample_rate: int, robust: bool) -> VoiceProfile:
    voiced = f0 > 0
    if voiced.sum() < 10:
        raise ValueError("too little voiced speech to match")
    log_f0 = np.log(f0[voiced])
    if robust:
        low, median, high = np.percentile(log_f0, [25, 50, 75])
        mean, std = float(median), float((high - low) / 1.349)  # the IQR of a normal distribution
    else:
        mean, std = float(log_f0.mean()), float(log_f0.std())
    freqs = np.linspace(0, sample_rate / 2, envelope.shape[1])
    return VoiceProfile(log_f0_mean=mean, log_f0_std=std, freqs_hz=freqs, log_envelope=np.log(envelope[voiced]).mean(axis=0))


def voice_profile(prompt: FloatArray, sample_rate: int = PROMPT_SAMPLE_RATE, settings: MatchSettings = DEFAULT_SETTINGS) -> VoiceProfile:
    world = analyze(prompt, sample_rate, settings)
    return _profile(world.f0, world.envelope, sample_rate, settings.robust_f0)


def _band(freqs: FloatArray) -> npt.NDArray[np.bool_]:
    return (freqs >= MATCH_BAND_HZ[0]) & (freqs <= MATCH_BAND_HZ[1])


def _warped(log_envelope: FloatArray, freqs: FloatArray, factor: float) -> FloatArray:
    """The envelope with its frequency axis stretched by ``factor``
    (works on the last axis, for one frame or a matrix of frames)."""
    # ``freqs``: a uniform grid from 0 Hz. Linear interpolation at the same
    # positions for every frame, vectorized
    # (np.interp per frame is a Python loop over thousands of frames).
    position = np.clip(freqs / factor / freqs[-1] * (freqs.size - 1), 0, freqs.size - 1)
    below = np.minimum(position.astype(np.intp), freqs.size - 2)
    weight = position - below
    result: FloatArray = log_envelope[..., below] * (1.0 - weight) + log_envelope[..., below + 1] * weight
    return result


def _best_warp(source: VoiceProfile, target_on_source: FloatArray, settings: MatchSettings) -> float:
    band = _band(source.freqs_hz)

    def distance(factor: float) -> float:
        difference = _warped(source.log_envelope, source.freqs_hz, factor)[band] - target_on_source[band]
        return float(np.var(difference))  # level differences do not count, shape does

    best = float(min(settings.warp_factors(), key=distance))
    return float(np.clip(best, *settings.warp_range))


def _smooth_eq(difference: FloatArray, freqs: FloatArray, settings: MatchSettings) -> FloatArray:
    """A smooth log-gain curve from a raw envelope difference: cepstrally
    liftered, limited, and faded out above the band the prompt covers."""
    band = _band(freqs)
    filled = np.where(band, difference, 0.0)
    filled[band] -= filled[band].mean()
    cepstrum = np.fft.irfft(filled)
    cepstrum[settings.eq_lifter : -settings.eq_lifter] = 0.0
    smooth = np.fft.rfft(cepstrum).real[: freqs.size]
    limit = settings.max_eq_db / 20 * np.log(10)
    fade = np.clip((MATCH_BAND_HZ[1] + 1000 - freqs) / 1000, 0.0, 1.0)
    result: FloatArray = np.clip(smooth, -limit, limit) * fade
    return result


def match_voice(
    audio: FloatArray,
    sample_rate: int,
    target: VoiceProfile,
    settings: MatchSettings = DEFAULT_SETTINGS,
    analysis: WorldAnalysis | None = None,
) -> npt.NDArray[np.float32]:
    """``audio`` (float32 mono) re-voiced toward ``target``; same length and
    level. ``analysis``: ``analyze(audio, sample_rate, settings)``, when
    already done. Raises ValueError when either side has too little voiced
    speech."""
    import pyworld

    world = analysis if analysis is not None else analyze(audio, sample_rate, settings)
    if (world.sample_rate, world.size, world.frame_period_ms) != (sample_rate, audio.size, settings.frame_period_ms):
        raise ValueError("the analysis is of another signal, or at another frame period")
    f0, envelope = world.f0, world.envelope
    source = _profile(f0, envelope, sample_rate, settings.robust_f0)
    strength = settings.strength
    spread = float(np.clip(target.log_f0_std / max(source.log_f0_std, 1e-3), *settings.spread_limits)) ** strength
    voiced = f0 > 0
    new_f0 = f0.copy()
    shift = (target.log_f0_mean - source.log_f0_mean) * strength
    new_f0[voiced] = np.exp((np.log(f0[voiced]) - source.log_f0_mean) * spread + source.log_f0_mean + shift)

    target_on_source = np.interp(source.freqs_hz, target.freqs_hz, target.log_envelope)
    factor = float(_best_warp(source, target_on_source, settings) ** strength)
    remaining = target_on_source - _warped(source.log_envelope, source.freqs_hz, factor)
    log_envelope = _warped(np.log(envelope), source.freqs_hz, factor) + _smooth_eq(remaining, source.freqs_hz, settings) * strength

    out = pyworld.synthesize(new_f0, np.ascontiguousarray(np.exp(log_envelope)), world.aperiodicity, sample_rate, settings.frame_period_ms)
    out = np.pad(out, (0, max(0, audio.size - out.size)))[: audio.size]
    return _level_matched(out.astype(np.float32), audio)


def _level_matched(out: npt.NDArray[np.float32], reference: FloatArray) -> npt.NDArray[np.float32]:
    reference_rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    out_rms = float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
    if out_rms > 0:
        out = out * (reference_rms / out_rms)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return (out * (0.99 / peak) if peak > 0.99 else out).astype(np.float32)
