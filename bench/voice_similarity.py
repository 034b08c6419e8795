"""Voice matching: speaker similarity of each built-in engine's output to
several prompt voices, without and with matching, plus analysis and matching
times. Similarity is the cosine of resemblyzer embeddings (1.0 = same voice).

    .venv/bin/python bench/voice_similarity.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.registry import get_engine
from engines.tts.base import SpeechRequest, VoiceReference
from engines.voice.analysis import analyze_prompt
from harness.audio_samples import encode, padded, speech

# Different speakers: the neural piper voice and espeak-ng voices with
# different variants (pitch, formants, voice quality).
PROMPTS = ["piper", "en", "en+f3", "en+m3", "en+f5", "en+klatt2"]
ENGINES = ["piper", "espeak"]
TEXT = "The quick brown fox jumps over the lazy dog, while the weather stays calm and the river runs slowly to the sea."


def run() -> dict:
    rows = []
    analysis_s = []
    with tempfile.TemporaryDirectory() as workdir:
        for prompt_voice in PROMPTS:
            start = time.perf_counter()
            analysis = analyze_prompt(padded(speech(prompt_voice)))
            analysis_s.append(time.perf_counter() - start)
            path = encode(analysis.audio, Path(workdir) / f"{prompt_voice}.wav")
            voice = VoiceReference(audio_path=path, embedding=tuple(analysis.embedding))
            for engine_name in ENGINES:
                engine = get_engine(engine_name)
                start = time.perf_counter()
                result = engine.run(SpeechRequest(text=TEXT, language="en", voice=voice), lambda *_: None, Path(workdir))
                rows.append(
                    {
                        "prompt": prompt_voice,
                        "engine": engine_name,
                        "without": result.voice["speaker_similarity_unmatched"],
                        "with": result.voice["speaker_similarity"],
                        "applied": result.voice["matching_applied"],
                        "seconds": time.perf_counter() - start,
                        "audio_s": result.duration_s,
                    }
                )
    return {"rows": rows, "analysis_p50_s": statistics.median(analysis_s)}


def main() -> None:
    result = run()
    print("| prompt voice | engine | similarity without matching | with matching | matching kept | job seconds (audio s) |")
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(
            f"| {row['prompt']} | {row['engine']} | {row['without']:.3f} | {row['with']:.3f} | {'yes' if row['applied'] else 'no'} "
            f"| {row['seconds']:.2f} ({row['audio_s']:.1f}) |"
        )
    gains = [row["with"] - row["without"] for row in result["rows"]]
    print(f"\nmean similarity gain: {statistics.mean(gains):+.3f}; prompt analysis p50: {result['analysis_p50_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
