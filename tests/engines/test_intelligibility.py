"""Intelligibility (pocketsphinx word error rate) and the voice-matching gate:
real engine output, decoded and recognized, nothing mocked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engines.audio.io import decode_audio
from engines.registry import get_engine
from engines.tts.base import SpeechRequest, TTSEngine, VoiceReference
from engines.voice import gate, intelligibility, matching, speaker
from engines.voice.intelligibility import normalize, word_error_rate
from harness.audio_samples import RATE, encode, speech

HARVARD = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish."
)

# ------------------------------------------------------------------ normalization and WER


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The Quick, brown FOX!", "the quick brown fox"),
        ("It's 5 o'clock; isn't it?", "it's five o'clock isn't it"),
        ("42 cats and 1,000 dogs", "forty two cats and one thousand dogs"),
        ("In 1999 and 1905, not 2024.", "in nineteen ninety nine and nineteen oh five not two thousand twenty four"),
        ("the 1st, 2nd, 3rd and 21st", "the first second third and twenty first"),
        ("3.5% of $20", "three point five percent of twenty dollars"),
        ("a well-known 100-year storm", "a well known one hundred year storm"),
        ("1000000 and 115", "one million and one hundred fifteen"),
    ],
)
def test_normalize_spells_numbers_and_drops_case_and_punctuation(text, words):
    assert normalize(text) == words.split()


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    assert word_error_rate("The quick brown fox.", "the quick brown fox") == 0.0
    assert word_error_rate("two dogs", "2 Dogs!") == 0.0  # normalized on both sides
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)  # one substitution, one deletion
    assert word_error_rate("a b", "a b c d") == pytest.approx(1.0)  # two insertions
    assert word_error_rate("a b c", "") == 1.0
    assert word_error_rate("", "") == 0.0


# ------------------------------------------------------------------ recognition


def test_clean_piper_speech_scores_well_below_garbled_speech():
    """A piper sentence, recognized: most words right. The same audio time-
    reversed has the same voice, level and spectrum, and no words."""
    audio = speech("piper", HARVARD)  # deterministic: piper without its sampling noise
    clean = intelligibility.measure(audio, HARVARD, "en", RATE)
    garbled = intelligibility.measure(audio[::-1].copy(), HARVARD, "en", RATE)
    assert clean is not None and garbled is not None
    assert clean < 0.45, clean
    assert garbled > 0.8, garbled
    assert garbled - clean > 0.4


def test_recognize_reads_a_file_and_only_languages_with_a_model(tmp_path):
    path = encode(speech("piper", "Rice is often served in round bowls."), tmp_path / "speech.wav")
    words = intelligibility.recognize(path, language="en-US")
    assert words is not None and "rice" in words.split()
    assert intelligibility.recognize(path, language="de") is None
    assert intelligibility.measure(path, "Reis wird oft in runden Schalen serviert.", "de") is None
    assert intelligibility.has_model("en") and intelligibility.has_model("en-gb")
    assert not intelligibility.has_model("cmn") and not intelligibility.has_model("eng-x")


# ------------------------------------------------------------------ the gate


def test_decide_keeps_matching_only_when_similarity_rises_and_wer_holds():
    keep = {"similarity_before": 0.5, "similarity_after": 0.7}
    assert gate.decide(**keep, wer_before=0.3, wer_after=0.3 + gate.WER_TOLERANCE, words=80) is None
    assert gate.decide(**keep, wer_before=0.3, wer_after=0.3 + gate.WER_TOLERANCE + 0.02, words=80) == "intelligibility"
    # A short text: one more wrong word is within the noise, two are not.
    assert gate.decide(**keep, wer_before=0.2, wer_after=0.2 + 1 / 10, words=10) is None
    assert gate.decide(**keep, wer_before=0.2, wer_after=0.2 + 2 / 10, words=10) == "intelligibility"
    assert gate.decide(**keep, wer_before=None, wer_after=None) is None  # no model: similarity decides
    assert gate.decide(similarity_before=0.7, similarity_after=0.7, wer_before=0.3, wer_after=0.1) == "similarity"


def _voice(tmp_path, prompt_voice: str = "en+f3") -> VoiceReference:
    prompt = speech(prompt_voice)
    return VoiceReference(audio_path=encode(prompt, tmp_path / "prompt.wav"), embedding=tuple(speaker.embed(prompt)))


def test_an_extreme_warp_is_less_intelligible_and_the_gate_refuses_it():
    """Formants warped down by a third: pocketsphinx loses most words."""
    audio = speech("piper", HARVARD)
    extreme = matching.MatchSettings(warp_range=(0.66, 0.66), max_eq_db=0.0)
    warped = matching.match_voice(audio, RATE, matching.voice_profile(speech("en+f3")), extreme)
    clear, damaged = (intelligibility.measure(x, HARVARD, "en", RATE) for x in (audio, warped))
    assert clear is not None and damaged is not None
    assert damaged > clear + 0.25, (clear, damaged)
    assert gate.decide(similarity_before=0.5, similarity_after=0.9, wer_before=clear, wer_after=damaged, words=33) == "intelligibility"


def test_the_engine_falls_back_to_unmatched_speech_when_matching_destroys_intelligibility(tmp_path, monkeypatch):
    """A "matching" that copies the prompt's voice perfectly and loses the
    words (it returns the prompt itself): similarity soars, WER goes to ~1.
    The engine must deliver its own speech, and say why."""
    prompt = speech("en+f3")

    def copy_the_prompt(audio, sample_rate, target, settings=matching.DEFAULT_SETTINGS, analysis=None):
        from engines.audio.dsp import resample

        voice = resample(prompt, RATE, sample_rate)
        return np.resize(voice, audio.size).astype(np.float32)

    monkeypatch.setattr(matching, "match_voice", copy_the_prompt)
    voice = _voice(tmp_path)
    result = get_engine("piper").run(SpeechRequest(text=HARVARD, language="en", voice=voice), lambda *_: None, tmp_path)
    assert result.voice is not None
    assert result.voice["matching_applied"] is False
    assert result.voice["reason"] == "intelligibility"
    quality = result.quality
    assert quality["speaker_similarity_matched"] > quality["speaker_similarity_unmatched"]
    assert quality["wer_matched"] > quality["wer_unmatched"] + 0.3
    assert quality["wer"] == quality["wer_unmatched"]
    assert quality["speaker_similarity"] == result.voice["speaker_similarity"] == quality["speaker_similarity_unmatched"]
    assert quality["wer_measured_s"] == pytest.approx(result.duration_s, abs=0.05)  # a short text: all of it
    # What was delivered is the engine's own speech: recognizable.
    delivered, rate = decode_audio(result.path)
    assert intelligibility.measure(delivered, HARVARD, "en", rate) == pytest.approx(quality["wer"], abs=0.1)


def test_a_matching_reports_similarity_and_wer_before_and_after(tmp_path):
    result = get_engine("piper").run(SpeechRequest(text=HARVARD, language="en", voice=_voice(tmp_path)), lambda *_: None, tmp_path)
    voice, quality = result.voice, result.quality
    assert voice is not None and voice["mode"] == "matching"
    assert voice["speaker_similarity"] == quality["speaker_similarity"]
    assert quality["matching_attempts"][0]["strength"] == 1.0
    if voice.get("reason") == "similarity":  # WER decides nothing then: not measured
        assert "wer" not in quality
        return
    # piper toward an espeak-ng female voice: similarity rises, so WER was measured.
    assert {"speaker_similarity_unmatched", "speaker_similarity_matched", "wer", "wer_unmatched", "wer_matched"} <= set(quality)
    assert quality["wer_measured_s"] == pytest.approx(result.duration_s, abs=0.05)
    if voice["matching_applied"]:
        words = len(normalize(HARVARD))
        assert quality["speaker_similarity_matched"] > quality["speaker_similarity_unmatched"]
        assert quality["wer_matched"] <= quality["wer_unmatched"] + gate.wer_tolerance(words) + 1e-9
        assert quality["wer"] == quality["wer_matched"]
        assert voice["matching_strength"] == quality["matching_strength"] in gate.FALLBACK_STRENGTHS
    else:
        assert voice["reason"] == "intelligibility"
        assert quality["wer"] == quality["wer_unmatched"]


class _Recorded(TTSEngine):
    """Real piper speech, synthesized once per text and replayed: piper (and
    espeak-ng) vary a little from call to call, so byte comparisons of the
    shared run() need the same samples each time."""

    name = "recorded"
    sample_rate = RATE

    @classmethod
    def languages(cls) -> frozenset[str]:
        return frozenset({"en"})

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        return speech("piper", text)


def test_voice_matching_off_leaves_the_audio_untouched(tmp_path):
    """With matching off, a voice changes nothing in the bytes (it is only scored)."""
    engine = _Recorded()
    text = "The quick brown fox jumps over the lazy dog."
    for name in ("plain", "off", "auto"):
        (tmp_path / name).mkdir()
    plain = engine.run(SpeechRequest(text=text, language="en"), lambda *_: None, tmp_path / "plain")
    plain_bytes = plain.path.read_bytes()
    voice = _voice(tmp_path)
    off = engine.run(SpeechRequest(text=text, language="en", voice=voice, voice_matching="off"), lambda *_: None, tmp_path / "off")
    assert off.path.read_bytes() == plain_bytes
    assert off.voice is not None
    similarity = off.voice["speaker_similarity"]
    assert off.voice == {
        "mode": "matching",
        "matching_applied": False,
        "reason": "off",
        "speaker_similarity": similarity,
        "speaker_similarity_unmatched": similarity,
    }
    assert off.quality == {"speaker_similarity": similarity, "speaker_similarity_unmatched": similarity}  # no WER: nothing to gate
    assert plain.voice is None and plain.quality == {}
    auto = engine.run(SpeechRequest(text=text, language="en", voice=voice), lambda *_: None, tmp_path / "auto")
    assert auto.voice is not None and auto.voice["matching_applied"] == (auto.path.read_bytes() != plain_bytes)


def test_a_language_without_a_model_is_gated_on_similarity_alone(tmp_path):
    result = get_engine("espeak").run(
        SpeechRequest(text="Guten Morgen, wie geht es dir heute?", language="de", voice=_voice(tmp_path)), lambda *_: None, tmp_path
    )
    assert result.quality.get("wer") is None  # None when similarity rose (asked, no model), else not asked
    assert result.quality.get("wer_matched") is None and "wer_measured_s" not in result.quality
    assert result.voice is not None and result.voice.get("reason") != "intelligibility"


def test_an_unknown_voice_matching_mode_is_refused(tmp_path):
    from engines.errors import PermanentEngineError

    with pytest.raises(PermanentEngineError) as caught:
        get_engine("espeak").run(SpeechRequest(text="Hello.", language="en", voice_matching="always"), lambda *_: None, tmp_path)
    assert caught.value.code == "invalid_voice_matching"


def test_gentler_strengths_are_tried_before_giving_up(monkeypatch):
    """The fallback ladder: a strength that fails on intelligibility makes
    room for the next one; the report names the strength kept."""
    audio = speech("piper", HARVARD)
    prompt = speech("en+f3")
    target = speaker.embed(prompt)
    real = matching.match_voice
    strengths: list[float] = []

    def ruinous_at_full_strength(audio, sample_rate, target_profile, settings=matching.DEFAULT_SETTINGS, analysis=None):
        strengths.append(settings.strength)
        if settings.strength == 1.0:
            return np.resize(prompt, audio.size).astype(np.float32)
        return real(audio, sample_rate, target_profile, settings, analysis)

    monkeypatch.setattr(matching, "match_voice", ruinous_at_full_strength)
    outcome = gate.match_gated(
        audio,
        RATE,
        prompt=prompt,
        target=target,
        language="en",
        excerpt=gate.Excerpt(HARVARD, audio.size),
        strengths=(1.0, 0.5),
    )
    assert strengths == [1.0, 0.5]
    if outcome.voice["matching_applied"]:
        assert outcome.voice["matching_strength"] == 0.5
    else:
        assert outcome.voice["reason"] in ("intelligibility", "similarity")
    assert replace(matching.DEFAULT_SETTINGS, strength=0.5).strength == 0.5
