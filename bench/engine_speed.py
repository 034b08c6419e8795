"""Engine speed: real-time factor of the built-in engines on this machine."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.registry import get_engine
from engines.tts.base import SpeechRequest

TEXT = (
    "Mynah turns text into speech on ordinary processors. Each sentence is synthesized in turn, "
    "and the pieces are joined with short pauses. This paragraph is long enough to measure a stable speed."
)


def run() -> list[dict]:
    rows = []
    for name, language in (("piper", "en"), ("espeak", "en"), ("espeak", "cmn")):
        load_start = time.perf_counter()
        engine = get_engine(name)
        load_s = time.perf_counter() - load_start
        text = TEXT if language == "en" else "今天天气很好，我们去公园散步吧。" * 5
        runs = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as workdir:
                start = time.perf_counter()
                result = engine.run(SpeechRequest(text=text, language=language), lambda p, s: None, Path(workdir))
                runs.append((time.perf_counter() - start, result.duration_s))
        elapsed, audio_s = min(runs)
        rows.append(
            {"engine": name, "language": language, "load_s": load_s, "synth_s": elapsed, "audio_s": audio_s, "rtf": elapsed / audio_s}
        )
    return rows


def main() -> None:
    for row in run():
        print(
            f"engine {row['engine']:6} [{row['language']}]: {row['audio_s']:.1f} s of audio in {row['synth_s'] * 1000:.0f} ms "
            f"(RTF {row['rtf']:.3f}); first load {row['load_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
