"""Intelligibility: word error rate of speech against the text it should say,
with an offline recognizer (pocketsphinx; its en-us acoustic model, language
model and dictionary ship inside the wheel: nothing is downloaded).

Only English has a model. For any other language ``recognize`` and
``measure`` return None: "not measured", never a guess.

The WER is an absolute judge only for clear speech: pocketsphinx's small
en-us model scores the piper voice around 0.3-0.4 and espeak-ng (a formant
synthesizer with British vowels) around 0.9 on Harvard sentences. It is a
good *relative* judge: the same text spoken two ways, as voice matching
compares it. Time-reversed speech scores ~1.0.

Cost (measured with ``bench/voice_similarity.py`` on one core of a shared
2-core machine): loading the decoder ~0.2 s once per process, then ~0.1-0.2 s
per second of audio (real-time factor 0.1-0.2). The decoder is loaded once
per process, lazily (or at worker start with ``load()``), and used by one
thread at a time behind a lock.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

RECOGNIZER_SAMPLE_RATE = 16000  # the en-us acoustic model's rate
_FILLER = re.compile(r"<[^>]*>|\[[^\]]*\]|\(\d+\)")  # <sil>, [noise], alternate-pronunciation marks
_lock = threading.Lock()
_decoder: Any = None


def has_model(language: str) -> bool:
    """English in any region (en, en-us, en-gb...): the wheel's en-us model."""
    code = language.strip().lower().replace("_", "-")
    return code == "en" or code.startswith("en-")


def load() -> None:
    """Load the decoder now (worker start), not during the first job."""
    _load()


def _load() -> Any:
    global _decoder
    with _lock:
        if _decoder is None:
            from pocketsphinx import Decoder

            # The defaults are the wheel's en-us model, its language model and dictionary.
            _decoder = Decoder(loglevel="FATAL")
    return _decoder


def recognize(audio: Path | npt.NDArray[np.floating], sample_rate: int | None = None, language: str = "en") -> str | None:
    """The words recognized in ``audio`` (a file, or float mono samples at
    ``sample_rate``), lower case, or None when ``language`` has no model."""
    if not has_model(language):
        return None
    from engines.audio.dsp import resample

    if isinstance(audio, Path):
        from engines.audio.io import decode_audio

        samples, _ = decode_audio(audio, RECOGNIZER_SAMPLE_RATE)
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is required for samples")
        samples = resample(np.asarray(audio, dtype=np.float32), sample_rate, RECOGNIZER_SAMPLE_RATE)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    decoder = _load()
    with _lock:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        text = str(hypothesis.hypstr) if hypothesis is not None else ""
    return _FILLER.sub(" ", text).lower().strip()


def measure(audio: Path | npt.NDArray[np.floating], text: str, language: str, sample_rate: int | None = None) -> float | None:
    """Word error rate of ``audio`` against ``text`` (0 = every word right),
    or None when ``language`` has no recognizer model."""
    hypothesis = recognize(audio, sample_rate, language)
    return None if hypothesis is None else word_error_rate(text, hypothesis)


# ------------------------------------------------------------------ WER


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after
    ``normalize`` on both sides. Can exceed 1 when much is inserted. An empty
    reference scores 0 against an empty hypothesis, else 1."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return _edit_distance(ref, hyp) / len(ref)


def _edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (one row of the table at a time)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref_word != hyp_word))
    return row[-1]


# ------------------------------------------------------------------ normalization

_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}
# 1,234.56 / 1234 / .5 / 3rd ; a currency sign before it is read after it ("$5" -> "five dollars").
_NUMBER = re.compile(r"([$£€]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?(st|nd|rd|th)?", re.IGNORECASE)
_NUMBER_TOKEN = re.compile(r"(?<![\d.])[$£€]?(?:\d[\d,]*)?\.?\d+(?:(?:st|nd|rd|th)\b)?")
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def normalize(text: str) -> list[str]:
    """Words for scoring: lower case, numbers spelled out ("42" -> "forty
    two", "1999" -> "nineteen ninety nine", "3.5" -> "three point five",
    "2nd" -> "second", "$5" -> "five dollars", "50%" -> "fifty percent"),
    punctuation dropped (apostrophes inside words kept, hyphens split)."""
    text = text.lower().replace("\N{RIGHT SINGLE QUOTATION MARK}", "'")
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    text = _NUMBER_TOKEN.sub(_spell_match, text)
    return _WORD.findall(text)


def _spell_match(match: re.Match[str]) -> str:
    parsed = _NUMBER.fullmatch(match.group(0))
    if parsed is None:  # e.g. "1,23": read the digits one group at a time
        return " ".join(_cardinal(int(part)) for part in re.findall(r"\d+", match.group(0)))
    currency, whole, fraction, suffix = parsed.groups()
    words: list[str] = []
    if whole is not None:
        value = int(whole.replace(",", ""))
        if suffix and fraction is None:
            words.append(_ordinal(value))
        elif fraction is None and "," not in whole and len(whole) == 4 and 1100 <= value <= 1999:
            words.append(_year(value))
        else:
            words.append(_cardinal(value))
    if fraction is not None:
        words.append("point " + " ".join(_ONES[int(digit)] for digit in fraction))
    if currency:
        words.append(_CURRENCY[currency])
    return " " + " ".join(words) + " "


def _cardinal(value: int) -> str:
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {_cardinal(rest)}" if rest else "")
    for scale, name in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            return f"{_cardinal(high)} {name}" + (f" {_cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _ordinal(value: int) -> str:
    words = _cardinal(value).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year(value: int) -> str:
    """1999 -> nineteen ninety nine, 1905 -> nineteen oh five, 1900 -> nineteen hundred."""
    century, rest = divmod(value, 100)
    if rest == 0:
        return f"{_cardinal(century)} hundred"
    return f"{_cardinal(century)} " + (f"oh {_ONES[rest]}" if rest < 10 else _cardinal(rest))
