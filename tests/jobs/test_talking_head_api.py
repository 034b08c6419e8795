"""POST /v1/talking-head end to end: multipart validation, the image checks in
the web process, a real Dramatiq worker rendering a playable MP4, the speech
stage for text, the out-of-memory resolution ladder, queues, tenant isolation."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from engines.video.media import probe_video
from harness.audio_samples import RATE, encode, speech
from harness.doubles import SmallGpuVideoEngine
from harness.portraits import astronaut, coffee, encoded, grace_hopper, two_people
from jobs.models import Job
from tests.support.workers import running_worker, wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)  # the worker thread needs committed rows

FRAME = 1 / 25


@pytest.fixture
def worker(stub_broker):
    with running_worker(stub_broker) as running:
        yield running


def _image(pixels=None, fmt="PNG", name="portrait.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, encoded(astronaut() if pixels is None else pixels, fmt), content_type="image/png")


def _audio(tmp_path: Path, seconds: float = 2.0, name: str = "speech.wav") -> SimpleUploadedFile:
    words = speech("piper")[: int(seconds * RATE)]
    path = encode(np.concatenate([np.zeros(RATE // 4, np.float32), words]), tmp_path / "speech.wav")
    return SimpleUploadedFile(name, path.read_bytes(), content_type="audio/wav")


def _post(api, **fields):
    return api.post("/v1/talking-head", fields, format="multipart")


def _download(api, url: str, tmp_path: Path, name: str) -> Path:
    response = api.get(url.replace("http://testserver", ""))
    assert response.status_code == 200
    path = tmp_path / name
    path.write_bytes(b"".join(response.streaming_content))
    return path


def _error(response) -> dict:
    return response.json()["error"]


# ------------------------------------------------------------------ end to end


def test_portrait_and_audio_become_a_playable_lip_synced_mp4(api, worker, tmp_path):
    response = _post(api, image=_image(), audio=_audio(tmp_path), metadata='{"take": 1}')
    assert response.status_code == 202, response.content
    job = response.json()
    assert response["Location"] == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "talking_head" and job["engine"] == "builtin" and job["metadata"] == {"take": 1}
    assert job["input"]["image"]["format"] == "png" and job["input"]["resolution"] == 512

    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["content_type"] == "video/mp4"
    assert (result["width"], result["height"], result["resolution"], result["requested_resolution"]) == (512, 512, 512, 512)
    assert result["faces_found"] == 1 and result["warnings"] == []
    video = probe_video(_download(api, result["url"], tmp_path, "out.mp4"))
    assert (video.video_codec, video.audio_codec) == ("h264", "aac")
    assert abs(video.duration_s - 2.25) <= FRAME and abs(result["duration_s"] - 2.25) <= FRAME
    assert abs(result["audio_duration_s"] - 2.25) <= 0.01
    assert "audio" not in result  # the client sent the audio: no second file


def test_text_is_spoken_first_and_its_audio_kept_as_a_second_file(api, worker, tmp_path):
    response = _post(api, image=_image(grace_hopper(), "JPEG", "hopper.jpg"), text="Hello there, nice to meet you.", language="en")
    assert response.status_code == 202, response.content
    assert response.json()["input"]["text"] == "Hello there, nice to meet you."
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "succeeded", done
    audio = done["result"]["audio"]
    assert audio["content_type"] == "audio/wav" and audio["url"].endswith("/result/audio")
    from engines.audio.io import probe_duration

    speech_s = probe_duration(_download(api, audio["url"], tmp_path, "speech.wav"))
    assert abs(speech_s - audio["duration_s"]) < 0.01
    video = probe_video(_download(api, done["result"]["url"], tmp_path, "out.mp4"))
    assert abs(video.duration_s - speech_s) <= FRAME


def test_events_report_each_stage(api, worker, tmp_path):
    job = _post(api, image=_image(), text="One two three.").json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded"
    from jobs import events

    entries = events._client().xrange(events.stream_key(job["id"]))
    stages = [data.get("stage") for _, _, data in events.decode_entries(entries)]
    for stage in ("checking image", "synthesizing", "checking audio", "detecting face", "rendering", "storing"):
        assert stage in stages, stages


def test_no_face_fails_the_job_with_face_not_detected(api, worker, tmp_path):
    job = _post(api, image=_image(coffee()), audio=_audio(tmp_path)).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "face_not_detected"
    assert done["attempts"] == 1  # permanent: not retried


def test_several_faces_use_the_largest_with_a_warning(api, worker, tmp_path):
    job = _post(api, image=_image(two_people()), audio=_audio(tmp_path, 1.0)).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["warnings"] == ["multiple_faces"] and done["result"]["faces_found"] == 2
    assert done["result"]["face"]["left"] < 400


def test_unreadable_audio_fails_the_job_clearly(api, worker):
    audio = SimpleUploadedFile("a.mp3", b"ID3" + bytes(2000), content_type="audio/mpeg")
    done = wait_for_job(api, _post(api, image=_image(), audio=audio).json()["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "audio_unreadable"


def test_audio_over_the_limit_fails_with_audio_too_long(api, worker, tmp_path, settings):
    settings.TALKING_HEAD_MAX_AUDIO_S = 1.0
    done = wait_for_job(api, _post(api, image=_image(), audio=_audio(tmp_path, 2.0)).json()["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "audio_too_long"


# -------------------------------------------------------- out of memory


def test_out_of_memory_steps_down_the_resolution_ladder(api, worker, tmp_path):
    SmallGpuVideoEngine.calls.clear()
    job = _post(api, image=_image(), audio=_audio(tmp_path, 1.0), engine="small-gpu", resolution="1024").json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    assert SmallGpuVideoEngine.calls == [1024, 768, 512]
    result = done["result"]
    assert (result["resolution"], result["requested_resolution"]) == (512, 1024)
    assert [step["resolution"] for step in result["fallbacks"]] == [1024, 768]
    video = probe_video(_download(api, result["url"], tmp_path, "out.mp4"))
    assert (video.width, video.height) == (512, 512)


def test_out_of_memory_at_every_resolution_is_retried_then_fails(api, stub_broker, tmp_path, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    with running_worker(stub_broker):
        job = _post(api, image=_image(), audio=_audio(tmp_path, 1.0), engine="no-memory", resolution="768").json()
        done = wait_for_job(api, job["id"], timeout=60)
    assert done["status"] == "failed" and done["error"]["code"] == "out_of_memory"
    assert done["attempts"] == 2


# ------------------------------------------------------------------ queues


def test_video_jobs_have_their_own_queues(api, tenant, stub_broker, tmp_path, settings):
    type(tenant).objects.filter(pk=tenant.pk).update(allow_high_priority=True)
    _post(api, image=_image(), audio=_audio(tmp_path))
    _post(api, image=_image(grace_hopper()), audio=_audio(tmp_path), priority="high")
    api.post("/v1/tts", {"text": "Speech stays on its queue."}, format="json")
    settings.VIDEO_HIRES_MIN_RESOLUTION = 1024
    _post(api, image=_image(), audio=_audio(tmp_path), resolution="1024")
    _post(api, image=_image(), audio=_audio(tmp_path, 1.5), resolution="768")
    depth = {name: len(queue.queue) for name, queue in stub_broker.queues.items() if not name.endswith(".DQ") and not name.endswith(".XQ")}
    assert depth["video"] == 2 and depth["video-high"] == 1 and depth["video-hires"] == 1 and depth["tts"] == 1


# -------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resolution": "640"}, "resolution"),
        ({"expand_ratio": "0.5"}, "expand_ratio"),
        ({"inference_steps": "5"}, "inference_steps"),
        ({"dynamic_scale": "3"}, "dynamic_scale"),
        ({"motion_scale": "nan"}, "motion_scale"),
        ({"fps": "200"}, "fps"),
        ({"temporal_smoothing": "maybe"}, "temporal_smoothing"),
        ({"metadata": "[1, 2]"}, "metadata"),
        ({"voice_id": "8b0c5f3e-2a9e-4a7e-9d55-111111111111"}, "voice_id"),
        ({"colour": "blue"}, "colour"),
        ({"duration": "999"}, "duration"),  # read from the audio: refused, not silently ignored
    ],
)
def test_bad_parameters_are_validation_errors(api, tmp_path, fields, field):
    response = _post(api, image=_image(), audio=_audio(tmp_path), **fields)
    assert response.status_code == 400, response.content
    assert _error(response)["code"] == "validation_error"
    assert field in _error(response)["details"]["fields"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("depth", [17, 1000, 5000])
def test_deeply_nested_metadata_is_a_field_error_not_a_500(api, tmp_path, depth):
    response = _post(api, image=_image(), audio=_audio(tmp_path), metadata='{"a": ' + "[" * depth + "]" * depth + "}")
    assert response.status_code == 400, response.content
    error = _error(response)
    assert error["code"] == "validation_error"
    assert [item["code"] for item in error["details"]["fields"]["metadata"]] == ["too_deep"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', '{"a": "\\u0085"}', '{"a": 1e999}', "", "{"])
def test_metadata_text_is_read_like_a_json_body(api, tmp_path, text):
    response = _post(api, image=_image(), audio=_audio(tmp_path), metadata=text)
    assert response.status_code == 400, response.content
    assert "metadata" in _error(response)["details"]["fields"]


def test_webhook_events_without_a_webhook_url_are_refused(api, tmp_path):
    response = _post(api, image=_image(), audio=_audio(tmp_path), webhook_events="job.succeeded")
    assert response.status_code == 400, response.content
    assert _error(response)["details"]["fields"]["webhook_events"][0]["code"] == "requires_webhook_url"
    assert not Job.objects.exists()


def test_audio_or_text_exactly_one(api, tmp_path):
    for fields in ({}, {"audio": _audio(tmp_path), "text": "Hi"}):
        response = _post(api, image=_image(), **fields)
        assert response.status_code == 400 and "audio" in _error(response)["details"]["fields"]
    response = api.post("/v1/talking-head", {"audio": _audio(tmp_path)}, format="multipart")
    assert response.status_code == 400 and "image" in _error(response)["details"]["fields"]


def test_options_an_engine_cannot_honour_are_refused(api, tmp_path, monkeypatch):
    response = _post(api, image=_image(), audio=_audio(tmp_path), inference_steps="20")
    assert response.status_code == 422 and _error(response)["code"] == "unsupported_option"
    assert _error(response)["details"]["options"] == ["inference_steps"]
    response = _post(api, image=_image(), audio=_audio(tmp_path), engine="sonic")
    assert response.status_code == 422 and _error(response)["code"] == "engine_not_configured"
    monkeypatch.setenv("COMFYUI_URLS", "http://127.0.0.1:9")
    response = _post(api, image=_image(), audio=_audio(tmp_path), engine="sonic", motion_scale="1.5")
    assert response.status_code == 422 and _error(response)["details"]["options"] == ["motion_scale"]
    response = _post(api, image=_image(), audio=_audio(tmp_path), engine="sonic", fps="30")
    assert response.status_code == 422 and _error(response)["details"]["options"] == ["fps"]
    response = _post(api, image=_image(), audio=_audio(tmp_path), engine="piper")  # a speech engine
    assert response.status_code == 400 and _error(response)["code"] == "unknown_engine"
    assert not Job.objects.exists()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions and holds almost no data: a
    decompression bomb for anyone who decodes before checking."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 422, "image_unreadable"),
        (b"this is a text file, not a portrait", 422, "image_unreadable"),
        (encoded(astronaut(), "PNG")[:5000], 422, "image_unreadable"),  # truncated
        (encoded(astronaut(), "JPEG")[:3000], 422, "image_unreadable"),
        (_png_header(100_000, 100_000), 422, "image_too_large"),  # decompression bomb
        (encoded(np.zeros((8, 5000, 3), np.uint8)), 422, "image_too_large"),
        (_gif(), 422, "unsupported_image_type"),
        (b"%PDF-1.7\n" + bytes(100), 422, "image_unreadable"),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "bomb", "wide", "gif", "pdf"],
)
def test_bad_images_are_refused_at_submit(api, tmp_path, content, status, code):
    image = SimpleUploadedFile("portrait.png", content, content_type="image/png")  # the declared type is a lie
    response = _post(api, image=image, audio=_audio(tmp_path))
    assert response.status_code == status, response.content
    assert _error(response)["code"] == code
    assert not Job.objects.exists()


def test_webp_is_accepted(api, tmp_path):
    response = _post(api, image=_image(astronaut(), "WEBP", "p.webp"), audio=_audio(tmp_path))
    assert response.status_code == 202 and response.json()["input"]["image"]["format"] == "webp"


def test_files_over_their_limits_are_413(api, tmp_path, settings):
    settings.TALKING_HEAD_MAX_IMAGE_BYTES = 1000
    response = _post(api, image=_image(), audio=_audio(tmp_path))
    assert response.status_code == 413 and _error(response)["details"]["field"] == "image"
    settings.TALKING_HEAD_MAX_IMAGE_BYTES = 10 * 1024 * 1024
    settings.TALKING_HEAD_MAX_AUDIO_BYTES = 1000
    response = _post(api, image=_image(), audio=_audio(tmp_path))
    assert response.status_code == 413 and _error(response)["details"]["field"] == "audio"


def test_client_file_names_never_reach_storage(api, tmp_path):
    image = _image(name="../../../etc/passwd.png")
    response = _post(api, image=image, audio=_audio(tmp_path, name="../../x.wav"))
    job = Job.objects.get(id=response.json()["id"])
    assert set(job.input_files) == {"image", "audio"}
    for key in job.input_files.values():
        assert key.startswith(f"tenants/{job.tenant_id}/jobs/{job.id}/input-") and ".." not in key and "passwd" not in key
        assert default_storage.exists(key)


# ------------------------------------------------- idempotency, dedup, tenants


def test_idempotency_key_counts_file_contents(api, tmp_path):
    headers = {"HTTP_IDEMPOTENCY_KEY": "take-1"}
    first = api.post("/v1/talking-head", {"image": _image(), "audio": _audio(tmp_path)}, format="multipart", **headers)
    again = api.post("/v1/talking-head", {"image": _image(), "audio": _audio(tmp_path)}, format="multipart", **headers)
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = api.post("/v1/talking-head", {"image": _image(grace_hopper()), "audio": _audio(tmp_path)}, format="multipart", **headers)
    assert other.status_code == 422 and _error(other)["code"] == "idempotency_key_reused"


def test_an_identical_request_reuses_the_video(api, worker, tmp_path):
    first = wait_for_job(api, _post(api, image=_image(), audio=_audio(tmp_path, 1.0)).json()["id"])
    assert first["status"] == "succeeded"
    again = _post(api, image=_image(), audio=_audio(tmp_path, 1.0))
    assert again.json()["cache_hit"] is True and again.json()["status"] == "succeeded"
    assert Job.objects.get(id=again.json()["id"]).input_files == {}  # its uploads were not kept
    other = _post(api, image=_image(), audio=_audio(tmp_path, 1.0), expand_ratio="0.25")
    assert other.json()["cache_hit"] is False


def test_another_tenants_video_is_404(api, other_api, worker, tmp_path):
    done = wait_for_job(api, _post(api, image=_image(), text="Hi.").json()["id"])
    for path in (f"/v1/jobs/{done['id']}", f"/v1/jobs/{done['id']}/result", f"/v1/jobs/{done['id']}/result/audio"):
        assert other_api.get(path).status_code == 404
    assert api.get(f"/v1/jobs/{done['id']}/result/subtitles").status_code == 404
