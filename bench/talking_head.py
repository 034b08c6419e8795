"""Talking heads: the built-in renderer's speed for a 10 s clip at each
resolution (wall seconds, frames per second), lip-sync quality measured from
the outside (an independent landmark pass over the decoded MP4 against the
loudness of its audio), and end-to-end seconds through the platform
(POST /v1/talking-head -> succeeded) when given a running stack.

    .venv/bin/python bench/talking_head.py            # engine and quality only
    .venv/bin/python bench/talking_head.py --url http://127.0.0.1:8000 --key KEY
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines.video.base import TalkingHeadRequest
from engines.video.builtin import BuiltinEngine
from engines.video.inputs import check_portrait
from engines.video.quality import measure
from harness.audio_samples import RATE, encode, speech
from harness.portraits import astronaut, encoded, grace_hopper

CLIP_S = 10.0


def clip() -> np.ndarray:
    """10 s: speech with pauses (a sentence, a breath, more speech, silence at the end)."""
    words = speech("piper")
    pause = np.zeros(RATE // 2, np.float32)
    audio = np.concatenate([pause, words[: 4 * RATE], pause, words[4 * RATE : int(8.5 * RATE)]])
    return np.pad(audio, (0, max(0, int(CLIP_S * RATE) - audio.size)))[: int(CLIP_S * RATE)]


def run(resolutions: tuple[int, ...] = (512, 768, 1024)) -> dict:
    engine = BuiltinEngine()
    engine.load()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir)
        audio_path = encode(clip(), root / "clip.wav")
        for name, pixels in (("astronaut", astronaut()), ("grace_hopper", grace_hopper())):
            image = root / f"{name}.png"
            image.write_bytes(encoded(pixels))
            face = check_portrait(image).face
            for resolution in resolutions if name == "astronaut" else (512,):
                out = root / f"{name}-{resolution}"
                out.mkdir()
                request = TalkingHeadRequest(image_path=image, audio_path=audio_path, face=face, resolution=resolution)
                start = time.perf_counter()
                result = engine.run(request, lambda percent, stage: None, out)
                wall = time.perf_counter() - start
                row = {"portrait": name, "resolution": resolution, "wall_s": wall, "fps": result.frames / wall, "frames": result.frames}
                if resolution == 512:
                    report = measure(result.path)
                    row.update(
                        correlation=report.correlation,
                        lag=report.best_lag_frames,
                        silent=report.silent_mouth_max,
                        speech=report.speech_mouth_p90,
                        background=report.background_change_median,
                    )
                rows.append(row)
    return {"rows": rows}


def end_to_end(base_url: str, api_key: str) -> dict:
    """Seconds from POST to succeeded for a 10 s clip at 512 px, through the API and a worker."""
    from common import session_for

    session = session_for(api_key)
    with tempfile.TemporaryDirectory() as workdir:
        audio = encode(clip(), Path(workdir) / "clip.wav").read_bytes()
    files = {"image": ("portrait.png", encoded(astronaut()), "image/png"), "audio": ("clip.wav", audio, "audio/wav")}
    start = time.perf_counter()
    response = session.post(f"{base_url}/v1/talking-head", files=files, data={"cache": "false"}, timeout=60)
    response.raise_for_status()
    job_id = response.json()["id"]
    while True:
        body = session.get(f"{base_url}/v1/jobs/{job_id}", timeout=10).json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    total = time.perf_counter() - start
    return {"total_s": total, "status": body["status"], "duration_s": (body.get("result") or {}).get("duration_s")}


def main() -> None:
    from common import base_args

    args = base_args(__doc__.splitlines()[0]).parse_args()
    for row in run()["rows"]:
        line = f"{row['portrait']:>12} {row['resolution']:>4} px: {row['wall_s']:.2f} s for {CLIP_S:.0f} s ({row['fps']:.1f} frames/s)"
        if "correlation" in row:
            line += (
                f"; lip sync r={row['correlation']:.3f} lag={row['lag']} frames, mouth in silence {row['silent']:.3f}"
                f" vs speech p90 {row['speech']:.3f}, background change {row['background']:.3f}"
            )
        print(line)
    if args.key:
        result = end_to_end(args.url.rstrip("/"), args.key)
        print(f"end to end (10 s clip, 512 px): {result['total_s']:.2f} s ({result['status']})")


if __name__ == "__main__":
    main()
