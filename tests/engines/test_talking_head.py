"""The built-in talking head, judged from the outside: its MP4 is decoded and
an independent landmark pass (faces detected again in every frame) measures
the mouth against the loudness of the file's own audio track."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engines.errors import EngineOutOfMemory, PermanentEngineError
from engines.video import rig as rigging
from engines.video.base import TalkingHeadRequest
from engines.video.builtin import BuiltinEngine
from engines.video.face import face_models, mouth_opening
from engines.video.features import mouth_track
from engines.video.inputs import check_audio, check_portrait
from engines.video.media import probe_video
from engines.video.quality import measure
from harness.audio_samples import RATE, encode, speech
from harness.portraits import astronaut, cat, coffee, encoded, grace_hopper, two_people

SILENCE = np.zeros(RATE // 2, np.float32)


def _speech_with_pauses() -> np.ndarray:
    """Speech, a pause, more speech: 0.5 s silence at both ends and between."""
    words = speech("piper")
    return np.concatenate([SILENCE, words[: 3 * RATE], SILENCE, SILENCE, words[3 * RATE : 5 * RATE], SILENCE])


@pytest.fixture(scope="module")
def engine():
    engine = BuiltinEngine()
    engine.load()
    return engine


def _render(engine, tmp_path, pixels, audio, **options):
    image = tmp_path / "portrait.png"
    image.write_bytes(encoded(pixels))
    audio_path = encode(audio, tmp_path / "speech.wav")
    face = check_portrait(image).face
    calls = []
    request = TalkingHeadRequest(image_path=image, audio_path=audio_path, face=face, **options)
    result = engine.run(request, lambda percent, stage: calls.append((percent, stage)), tmp_path)
    return result, calls


@pytest.fixture(scope="module")
def rendered(engine, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("render")
    audio = _speech_with_pauses()
    result, calls = _render(engine, tmp_path, astronaut(), audio)
    return result, calls, audio, measure(result.path)


def test_the_video_is_h264_and_aac_as_long_as_the_audio(rendered):
    result, _, audio, _ = rendered
    info = probe_video(result.path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.fps) == (512, 512, 25.0)
    audio_s, frame = audio.size / RATE, 1 / 25
    assert abs(info.video_duration_s - audio_s) <= frame
    assert abs(info.audio_duration_s - audio_s) <= frame
    assert abs(info.frames - round(audio_s * 25)) <= 1
    assert info.audio_start_s == 0.0  # audio/video offset: none
    assert result.duration_s == pytest.approx(info.duration_s, abs=0.001)


def test_the_mouth_follows_the_loudness(rendered):
    report = rendered[3]
    assert report.faces_found == report.mouth.size  # the face stays a face in every frame
    assert report.correlation >= 0.6, report.correlation  # measured ~0.9
    assert abs(report.best_lag_frames) <= 1  # lip-sync offset within a frame


def test_the_mouth_is_closed_in_silences_and_open_in_speech(rendered):
    report = rendered[3]
    rest = mouth_opening(face_models().landmarks(grace_hopper(), face_models().detect(grace_hopper())[0])[0])
    # Closed like a closed mouth in a photo (Grace Hopper's: ~0.01), although
    # the astronaut smiles with her mouth open (~0.07) in the source photo.
    assert report.silent_mouth_max < max(0.025, 2.5 * rest)
    assert report.speech_mouth_p90 > 2.5 * report.silent_mouth_max


def test_pixels_outside_the_head_do_not_flicker(rendered):
    report = rendered[3]
    assert report.background_pixels > 10_000
    assert report.background_change_median < 0.2  # of 255: codec noise only


def test_progress_is_reported_per_stage_and_block_of_frames(rendered):
    calls = rendered[1]
    percents = [percent for percent, _ in calls]
    assert percents == sorted(percents) and percents[-1] >= 95
    stages = [stage for _, stage in calls]
    assert stages[0] == "detecting face" and "analyzing audio" in stages and stages[-1] == "encoding"
    assert stages.count("rendering") >= 6  # 200 frames, one report per 25


def test_dynamic_scale_scales_the_mouth_motion(engine, tmp_path):
    audio = np.concatenate([SILENCE, speech("piper")[: 2 * RATE], SILENCE])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    quiet, _ = _render(engine, tmp_path / "a", grace_hopper(), audio, dynamic_scale=0.5)
    loud, _ = _render(engine, tmp_path / "b", grace_hopper(), audio, dynamic_scale=2.0)
    assert measure(loud.path).speech_mouth_p90 > 1.5 * measure(quiet.path).speech_mouth_p90


def test_lip_sync_correction_closes_the_mouth_in_pauses_that_smoothing_blurs():
    # Voiced bursts (a 150 Hz buzz: harmonics across the speech band) and
    # pauses whose edges are known to the sample.
    t = np.arange(int(0.4 * RATE)) / RATE
    burst = (0.3 * (2 * ((150 * t) % 1) - 1)).astype(np.float32)
    gap = np.zeros(int(0.6 * RATE), np.float32)
    audio = np.concatenate([gap, burst, gap, burst, gap])
    frames = round(audio.size / RATE * 25)
    corrected = mouth_track(audio, fps=25, frames=frames, lip_sync_correction=True)
    blurred = mouth_track(audio, fps=25, frames=frames, lip_sync_correction=False)
    # Frames whose whole analysis window lies in a pause: one frame in from each edge.
    pause = np.zeros(frames, bool)
    for start, end in ((0.0, 0.6), (1.0, 1.6), (2.0, 2.6)):
        pause[round(start * 25) + 1 : round(end * 25) - 1] = True
    assert corrected.silent[pause].all() and not corrected.silent[~pause].all()
    assert corrected.open[pause].max() == 0 < blurred.open[pause].max()


def test_blinks_and_head_motion_stay_light(engine, tmp_path):
    result, _ = _render(engine, tmp_path, grace_hopper(), _speech_with_pauses(), expand_ratio=0.3)
    assert result.info["render_fps"] > 0
    # The head moves a little: face centres across frames spread by a few pixels, not tens.
    from engines.video.media import decode_frames

    centres = [face_models().detect(frame)[0].box for frame in list(decode_frames(result.path))[::10]]
    spread = np.ptp([box.left + box.width / 2 for box in centres])
    assert 0.3 < spread < 20


def test_out_of_memory_is_signalled_as_such(engine, tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(rigging, "build_rig", no_memory)
    with pytest.raises(EngineOutOfMemory):
        _render(engine, tmp_path, astronaut(), _speech_with_pauses())


# ------------------------------------------------------------ input checks


@pytest.mark.parametrize("portrait", [astronaut, grace_hopper])
def test_a_portrait_has_one_face(portrait, tmp_path):
    path = tmp_path / "p.jpg"
    path.write_bytes(encoded(portrait(), "JPEG"))
    check = check_portrait(path)
    assert check.faces_found == 1 and check.warnings == []
    landmarks, presence = face_models().landmarks(portrait(), face_models().detect(portrait())[0])
    box = check.face
    nose = landmarks[1]
    assert presence > 0.9 and box.left < nose[0] < box.left + box.width and box.top < nose[1] < box.top + box.height


@pytest.mark.parametrize("picture", [coffee, cat])
def test_no_human_face_is_face_not_detected(picture, tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(encoded(picture()))
    with pytest.raises(PermanentEngineError) as error:
        check_portrait(path)
    assert error.value.code == "face_not_detected"


def test_of_several_faces_the_largest_is_used_with_a_warning(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(encoded(two_people()))
    check = check_portrait(path)
    assert check.faces_found == 2 and check.warnings == ["multiple_faces"]
    assert check.face.left < 400  # Grace Hopper, on the left, is the larger face


def test_the_portrait_is_read_upright(tmp_path):
    """A phone photo stored sideways with an EXIF orientation tag."""
    sideways = Image.fromarray(grace_hopper()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    sideways.save(path, "JPEG", exif=exif)
    check = check_portrait(path)
    assert (check.image_width, check.image_height) == (512, 600) and check.faces_found == 1


def test_audio_checks(tmp_path):
    assert check_audio(encode(np.zeros(RATE * 2, np.float32), tmp_path / "a.wav"), max_audio_s=120) == pytest.approx(2.0, abs=0.01)
    with pytest.raises(PermanentEngineError) as error:
        check_audio(encode(np.zeros(RATE * 5, np.float32), tmp_path / "b.wav"), max_audio_s=4)
    assert error.value.code == "audio_too_long"
    (tmp_path / "c.mp3").write_bytes(b"ID3" + bytes(100))
    with pytest.raises(PermanentEngineError) as error:
        check_audio(tmp_path / "c.mp3", max_audio_s=120)
    assert error.value.code == "audio_unreadable"


def test_a_cancel_stops_the_render_at_the_next_block_of_frames(engine, tmp_path):
    from engines.errors import Canceled

    image = tmp_path / "portrait.png"
    image.write_bytes(encoded(grace_hopper()))
    seen = []

    def progress(percent, stage):
        seen.append(stage)
        if seen.count("rendering") == 2:  # the job was canceled meanwhile
            raise Canceled("job")

    request = TalkingHeadRequest(
        image_path=image, audio_path=encode(_speech_with_pauses(), tmp_path / "a.wav"), face=check_portrait(image).face
    )
    with pytest.raises(Canceled):
        engine.run(request, progress, tmp_path)
    assert "encoding" not in seen
