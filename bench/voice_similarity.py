"""Voice matching: speaker similarity *and* intelligibility of each built-in
engine's output for several prompt voices, without matching, with the raw
matching, and as delivered (after the gate that keeps matching only when it
raises similarity and keeps the words recognizable). Similarity is the cosine
of resemblyzer embeddings (1.0 = same voice); WER is pocketsphinx's word error
rate against the text (Harvard sentences 1-10, 0 = every word recognized).

    .venv/bin/python bench/voice_similarity.py [--quick] [--legacy]

--quick speaks only the first three sentences (for iterating; WER on 23 words
is coarse: one word = 0.04). --legacy matches with the settings from before
intelligibility was measured (matching.LEGACY_SETTINGS, full strength only),
through the same gate. piper samples its voice (VITS noise), so its numbers
move a little from run to run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.audio.io import decode_audio
from engines.registry import get_engine
from engines.tts.base import SpeechRequest, VoiceReference
from engines.voice import gate, intelligibility, matching
from engines.voice.analysis import analyze_prompt
from harness.audio_samples import encode, padded, speech

# Different speakers: the neural piper voice and espeak-ng voices with
# different variants (pitch, formants, voice quality).
PROMPTS = ["piper", "en", "en+f3", "en+m3", "en+f5", "en+klatt2"]
ENGINES = ["piper", "espeak"]
# IEEE "Harvard" sentences, list 1 (phonetically balanced, 80 words).
HARVARD = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]
TEXT = " ".join(HARVARD)


def run(text: str = TEXT) -> dict[str, Any]:
    rows = []
    analysis_s = []
    recognizer = {"audio_s": 0.0, "seconds": 0.0}
    job_s_off: dict[str, float] = {}
    intelligibility.load()
    measure = intelligibility.measure

    def timed_measure(audio: Any, reference: str, language: str, sample_rate: int | None = None) -> float | None:
        start = time.perf_counter()
        try:
            return measure(audio, reference, language, sample_rate)
        finally:  # the gate's recognitions, timed: pocketsphinx's cost per audio second
            recognizer["seconds"] += time.perf_counter() - start
            recognizer["audio_s"] += len(audio) / sample_rate if sample_rate else 0.0

    intelligibility.measure = timed_measure  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as workdir:
        for prompt_voice in PROMPTS:
            start = time.perf_counter()
            analysis = analyze_prompt(padded(speech(prompt_voice)))
            analysis_s.append(time.perf_counter() - start)
            path = encode(analysis.audio, Path(workdir) / f"{prompt_voice}.wav")
            voice = VoiceReference(audio_path=path, embedding=tuple(analysis.embedding))
            for engine_name in ENGINES:
                engine = get_engine(engine_name)
                if engine_name not in job_s_off:  # the same job without matching: what matching adds to a job
                    start = time.perf_counter()
                    engine.run(SpeechRequest(text=text, language="en", voice=voice, voice_matching="off"), lambda *_: None, Path(workdir))
                    job_s_off[engine_name] = time.perf_counter() - start
                start = time.perf_counter()
                result = engine.run(SpeechRequest(text=text, language="en", voice=voice), lambda *_: None, Path(workdir))
                seconds = time.perf_counter() - start
                assert result.voice is not None
                rows.append(
                    _row(
                        prompt_voice,
                        engine_name,
                        result.voice,
                        result.quality,
                        seconds,
                        result.duration_s,
                        result.path,
                        analysis.audio,
                        analysis.embedding,
                        text,
                    )
                )
    intelligibility.measure = measure  # type: ignore[assignment]
    return {
        "rows": rows,
        "analysis_p50_s": statistics.median(analysis_s),
        "job_s_off": job_s_off,
        "recognizer_rtf": recognizer["seconds"] / max(recognizer["audio_s"], 1e-9),
        "tolerance": gate.WER_TOLERANCE,
    }


def _row(
    prompt_voice: str,
    engine_name: str,
    voice: dict[str, Any],
    quality: dict[str, Any],
    seconds: float,
    audio_s: float,
    path: Path,
    prompt: Any,
    embedding: Any,
    text: str,
) -> dict[str, Any]:
    first = (quality.get("matching_attempts") or [{}])[0]  # the full-strength matching, before the gate
    raw_similarity, raw_wer, wer_without = first.get("speaker_similarity"), first.get("wer"), quality.get("wer_unmatched")
    if wer_without is None:
        # The gate stopped at similarity and measured no WER (it decides
        # nothing there). The delivered file is the unmatched speech: recognize
        # it, and match it again (WORLD is deterministic) for the raw matching.
        audio, rate = decode_audio(path)
        wer_without = intelligibility.measure(audio, text, "en", rate)
        if raw_similarity is not None:
            settings = matching.DEFAULT_SETTINGS
            candidate = matching.match_voice(audio, rate, matching.voice_profile(prompt, settings=settings), settings)
            raw_wer = intelligibility.measure(candidate, text, "en", rate)
    delivered_wer = quality["wer"] if voice["matching_applied"] else wer_without
    return {
        "prompt": prompt_voice,
        "engine": engine_name,
        "without": quality["speaker_similarity_unmatched"],
        "matched": raw_similarity,
        "with": quality["speaker_similarity"],
        "wer_without": wer_without,
        "wer_matched": raw_wer,
        "wer_with": delivered_wer,
        "applied": voice["matching_applied"],
        "reason": voice.get("reason", ""),
        "strength": voice.get("matching_strength"),
        "seconds": seconds,
        "audio_s": audio_s,
    }


def _f(value: float | None) -> str:
    return "\N{EN DASH}" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three sentences instead of ten")
    parser.add_argument("--legacy", action="store_true", help="the matching settings from before the WER gate")
    args = parser.parse_args()
    if args.legacy:
        matching.DEFAULT_SETTINGS = matching.LEGACY_SETTINGS
        gate.FALLBACK_STRENGTHS = (1.0,)
    result = run(" ".join(HARVARD[:3]) if args.quick else TEXT)
    print(
        "| prompt voice | engine | similarity: unmatched / matched / delivered | WER: unmatched / matched / delivered "
        "| matching kept | job seconds (audio s) |"
    )
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        kept = "yes" if row["applied"] else f"no ({row['reason']})"
        if row["applied"] and row["strength"] not in (None, 1.0):
            kept = f"yes (strength {row['strength']})"
        print(
            f"| {row['prompt']} | {row['engine']} | {_f(row['without'])} / {_f(row['matched'])} / {_f(row['with'])} "
            f"| {_f(row['wer_without'])} / {_f(row['wer_matched'])} / {_f(row['wer_with'])} | {kept} "
            f"| {row['seconds']:.2f} ({row['audio_s']:.1f}) |"
        )
    print()
    for line in summary_lines(result):
        print(line)


def summary_lines(result: dict[str, Any]) -> list[str]:
    rows = result["rows"]
    lines = []
    for label, subset in [("all", rows)] + [(engine, [r for r in rows if r["engine"] == engine]) for engine in ENGINES]:
        raw_gain = statistics.mean(r["matched"] - r["without"] for r in subset if r["matched"] is not None)
        raw_wer = statistics.mean(r["wer_matched"] - r["wer_without"] for r in subset if r["wer_matched"] is not None)
        # What the similarity-only rule (before the WER gate) would have delivered: the raw matching where it raised similarity.
        old = [r for r in subset if r["matched"] is not None and r["matched"] > r["without"]]
        old_gain = sum(r["matched"] - r["without"] for r in old) / len(subset)
        old_wer = sum(r["wer_matched"] - r["wer_without"] for r in old) / len(subset)
        gain = statistics.mean(r["with"] - r["without"] for r in subset)
        wer = statistics.mean(r["wer_with"] - r["wer_without"] for r in subset)
        lines.append(
            f"{label} ({len(subset)} pairs, mean WER unmatched {statistics.mean(r['wer_without'] for r in subset):.3f}): "
            f"raw matching: similarity {raw_gain:+.3f}, WER {raw_wer:+.3f}; "
            f"similarity-only rule: similarity {old_gain:+.3f}, WER {old_wer:+.3f}; "
            f"delivered (WER gate, tolerance {result['tolerance']}): similarity {gain:+.3f}, WER {wer:+.3f}"
        )
    off = ", ".join(f"{engine} {seconds:.2f} s" for engine, seconds in result["job_s_off"].items())
    lines.append(
        f"job time with voice_matching off (first prompt): {off}; pocketsphinx real-time factor "
        f"{result['recognizer_rtf']:.3f}; prompt analysis p50: {result['analysis_p50_s'] * 1000:.0f} ms"
    )
    return lines


if __name__ == "__main__":
    main()
