"""The Sonic adapter against a local server speaking ComfyUI's protocol
(tests/comfyui_server.py): uploads, the workflow's node inputs, the
WebSocket message sequence mapped to progress, the MP4 read back, and the
error classification (out of memory, rejected workflow, server down,
WebSocket dropped mid-render, cancel)."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from core.redis_server import free_port
from engines.audio.io import decode_audio
from engines.errors import (
    Canceled,
    EngineOutOfMemory,
    PermanentEngineError,
    TransientEngineError,
)
from engines.video import sonic
from engines.video.base import FaceBox, TalkingHeadRequest, TalkingHeadResult
from engines.video.media import probe_video
from engines.video.sonic import SonicConfig, SonicEngine
from harness.audio_samples import encode, speech
from tests.support.comfyui_server import ComfyUIStub, Validator, node_types

TEXT = "Hello there. This is a short test of the talking head."
FPS = 25
# The astronaut, cut to a 400 x 512 portrait, and the face the input check finds in it.
FACE = FaceBox(left=139, top=80, width=95, height=95, score=0.94)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[Path, Path]:
    """A real portrait (a JPEG, not square) and real speech in a container the
    server must never see (Ogg/Opus)."""
    folder = tmp_path_factory.mktemp("media")
    Image.fromarray(skimage.data.astronaut()[:, 40:440]).save(folder / "portrait.jpg", quality=95)
    return folder / "portrait.jpg", encode(speech("piper", TEXT), folder / "speech.ogg", "ogg")


def _request(media: tuple[Path, Path], **changes) -> TalkingHeadRequest:
    image, audio = media
    return TalkingHeadRequest(image_path=image, audio_path=audio, face=FACE, inference_steps=12, **changes)


def _engine(*urls: str, **options) -> SonicEngine:
    config = SonicConfig(urls=urls, connect_timeout_s=0.5, timeout_s=30, poll_interval_s=0.05, tick_s=0.2, **options)
    engine = SonicEngine(config)
    engine.load()
    return engine


class Recorder:
    def __init__(self, cancel_at: str | None = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.cancel_at = cancel_at

    def __call__(self, percent: int, stage: str) -> None:
        self.calls.append((percent, stage))
        if stage == self.cancel_at:
            raise Canceled("job-1")


@dataclass
class Rendered:
    result: TalkingHeadResult
    requests: list[dict]
    prompt: dict
    progress: list[tuple[int, str]]
    audio: np.ndarray
    rate: int


@pytest.fixture(scope="module")
def rendered(media, tmp_path_factory) -> Rendered:
    """One render, checked from several sides by the tests below."""
    request = _request(media, resolution=512, expand_ratio=0.3, dynamic_scale=1.2, seed=7)
    recorder = Recorder()
    with ComfyUIStub() as server:
        result = _engine(server.url).run(request, recorder, tmp_path_factory.mktemp("work"))
        requests, prompt = list(server.requests), server.prompts[0]
    audio, rate = decode_audio(media[1])
    return Rendered(result, requests, prompt, recorder.calls, audio, rate)


@pytest.mark.integration  # a fake ComfyUI server
def test_the_face_crop_and_a_16_bit_wav_of_the_audio_are_uploaded(rendered, media):
    uploads = [r for r in rendered.requests if r["path"] == "/upload/image"]
    assert [u["form"] for u in uploads] == [{"type": "input", "overwrite": "true"}] * 2
    image, audio = (u["files"]["image"] for u in uploads)
    assert image["filename"].startswith("mynah_") and image["filename"].endswith(".png")
    assert audio["filename"] == image["filename"].replace(".png", ".wav")
    # Sonic animates the whole picture it gets: it gets the square face crop, at the output size.
    crop = rendered.result.info["crop"]
    assert crop == {"left": 110, "top": 52, "side": 152}  # the face grown by expand_ratio=0.3 of its size on every side
    uploaded = np.asarray(Image.open(io.BytesIO(image["data"])))
    assert uploaded.shape == (512, 512, 3)
    box = (crop["left"], crop["top"], crop["left"] + crop["side"], crop["top"] + crop["side"])
    expected = np.asarray(Image.open(media[0]).convert("RGB").resize((512, 512), Image.LANCZOS, box=box))
    assert np.abs(uploaded.astype(int) - expected).mean() < 8
    with wave.open(io.BytesIO(audio["data"])) as wav:  # never the client's Ogg
        assert (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) == (2, 1, rendered.rate)
        # The speech, then two frames of silence so that Sonic's frame count covers it.
        assert wav.getnframes() == rendered.audio.size + round(2 / FPS * rendered.rate)


@pytest.mark.integration  # a fake ComfyUI server
def test_the_prompt_carries_the_parameters_and_the_decoded_duration(rendered):
    prompt, uploads = rendered.prompt, [r for r in rendered.requests if r["path"] == "/upload/image"]
    assert prompt["1"]["inputs"]["image"] == uploads[0]["files"]["image"]["filename"]
    assert prompt["2"]["inputs"]["audio"] == uploads[1]["files"]["image"]["filename"]
    assert prompt["5"]["class_type"] == "SONIC_PreData"
    predata = prompt["5"]["inputs"]
    assert predata["min_resolution"] == 512 and predata["expand_ratio"] == 0.3
    # The duration is the decoded audio's (the request has none to trust), with the two frames of padding.
    assert predata["duration"] == pytest.approx(rendered.audio.size / rendered.rate + 2 / FPS, abs=0.001)
    assert prompt["6"]["class_type"] == "SONICSampler"
    assert prompt["6"]["inputs"] | {"model": None, "data_dict": None} == {
        "model": None,
        "data_dict": None,
        "seed": 7,
        "inference_steps": 12,
        "dynamic_scale": 1.2,
        "fps": 25.0,
    }
    assert prompt["4"]["inputs"]["sonic_unet"] == "unet.pth" and prompt["4"]["inputs"]["dtype"] == "fp16"
    assert prompt["3"]["inputs"]["ckpt_name"] == "svd_xt_1_1.safetensors"
    assert prompt["7"]["inputs"]["format"] == "video/h264-mp4" and prompt["7"]["inputs"]["audio"] == ["2", 0]
    assert "8" not in prompt and "9" not in prompt  # the optional loaders are left out when unused


@pytest.mark.integration  # a fake ComfyUI server
def test_the_websocket_is_opened_before_queueing_with_the_prompts_client_id(rendered):
    paths = [r["path"] for r in rendered.requests]
    assert paths.index("/ws") < paths.index("/prompt")
    (ws,) = [r for r in rendered.requests if r["path"] == "/ws"]
    (queued,) = [r for r in rendered.requests if r["path"] == "/prompt"]
    assert queued["json"]["client_id"] == ws["query"]["clientId"]


@pytest.mark.integration  # a fake ComfyUI server
def test_progress_follows_the_nodes_and_steps_monotonically(rendered):
    percents = [p for p, _ in rendered.progress]
    assert percents == sorted(percents) and percents[-1] <= 99
    stages = list(dict.fromkeys(stage for _, stage in rendered.progress))
    assert stages == ["uploading", "queued", "starting", "loading", "preparing", "rendering", "encoding", "downloading"]
    rendering = {p for p, stage in rendered.progress if stage == "rendering"}
    assert len(rendering) >= 10 and min(rendering) == 20 and max(rendering) == 88  # 12 sampler steps across the band


@pytest.mark.integration  # a fake ComfyUI server
def test_the_video_is_fetched_and_read_back(rendered):
    result = rendered.result
    video = probe_video(result.path)
    assert (video.video_codec, video.audio_codec) == ("h264", "aac")
    assert (result.width, result.height, result.fps) == (512, 512, FPS)
    audio_s = rendered.audio.size / rendered.rate
    assert abs(result.duration_s - audio_s) <= 1 / FPS  # the portrait was 400 x 512: the crop made it square
    assert result.frames == video.frames and abs(result.frames - audio_s * FPS) <= 1
    assert result.size_bytes == result.path.stat().st_size and result.path.parent.name.startswith("work")
    assert f"/history/{result.info['prompt_id']}" in [r["path"] for r in rendered.requests]
    (view,) = [r for r in rendered.requests if r["path"] == "/view"]
    assert view["query"]["type"] == "output" and view["query"]["subfolder"] == "mynah"
    assert set(result.info) == {"prompt_id", "server", "render_s", "crop"} and result.info["render_s"] > 0


@pytest.mark.integration  # a fake ComfyUI server
def test_a_sampler_that_reports_no_steps_still_moves_and_checks_for_cancel(media, tmp_path):
    recorder = Recorder()
    with ComfyUIStub(sampler_progress=False, step_delay_s=0.05) as server:
        result = _engine(server.url).run(_request(media), recorder, tmp_path)
    assert result.frames > 0
    rendering = [p for p, stage in recorder.calls if stage == "rendering"]
    assert set(rendering) == {20}  # no steps reported: the node's start, then ticks
    assert len(rendering) >= 2  # the callback (the cancel check) was called during the silent render


@pytest.mark.integration  # a fake ComfyUI server
def test_a_frame_rate_sonic_cannot_render_is_refused_before_any_upload(media, tmp_path):
    with ComfyUIStub() as server:
        with pytest.raises(PermanentEngineError, match="25 frames per second") as caught:
            _engine(server.url).run(_request(media, fps=30), Recorder(), tmp_path)
        assert server.requests == []
    assert caught.value.code == "unsupported_option"


@pytest.mark.integration  # a fake ComfyUI server
def test_out_of_memory_on_the_server_is_reported_as_such(media, tmp_path):
    with ComfyUIStub(oom_above=512) as server, pytest.raises(EngineOutOfMemory, match="CUDA out of memory") as caught:
        _engine(server.url).run(_request(media, resolution=768), Recorder(), tmp_path)
    assert caught.value.code == "out_of_memory" and "SONICSampler" in caught.value.message


@pytest.mark.integration  # a fake ComfyUI server
@pytest.mark.parametrize(
    ("knobs", "config", "changes", "reason"),
    [
        ({}, {"svd_checkpoint": "svd_xt.safetensors"}, {}, "Value not in list"),
        ({}, {}, {"dynamic_scale": 3.0}, "bigger than max of 2.0"),
        ({"missing_nodes": frozenset({"SONICTLoader", "SONIC_PreData", "SONICSampler"})}, {}, {}, "does not exist"),
    ],
    ids=["unknown-model-file", "value-out-of-range", "sonic-nodes-not-installed"],
)
def test_a_workflow_the_server_rejects_is_permanent(media, tmp_path, knobs, config, changes, reason):
    with ComfyUIStub(**knobs) as server:
        with pytest.raises(PermanentEngineError, match=reason) as caught:
            _engine(server.url, **config).run(_request(media, **changes), Recorder(), tmp_path)
        assert server.history == {}
    assert caught.value.code == "engine_rejected_input"


def test_a_server_that_is_down_is_transient(media, tmp_path):
    with pytest.raises(TransientEngineError, match="No ComfyUI server took the render"):
        _engine(f"http://127.0.0.1:{free_port()}").run(_request(media), Recorder(), tmp_path)


@pytest.mark.integration  # a fake ComfyUI server
def test_a_dead_instance_fails_over_to_the_next(media, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with ComfyUIStub() as server:
        engine = _engine(dead, server.url)
        first = engine.run(_request(media), Recorder(), tmp_path)  # tries the dead one first
        second = engine.run(_request(media), Recorder(), tmp_path)  # starts at the live one: its loaders are cached
        cached = [
            data["nodes"] for entry in server.history.values() for event, data in entry["status"]["messages"] if event == "execution_cached"
        ]
    assert first.info["server"] == second.info["server"] == server.url
    assert first.frames == second.frames > 0 and first.path != second.path
    assert cached == [[], ["3", "4"]]


@pytest.mark.integration  # a fake ComfyUI server
def test_a_websocket_dropped_mid_render_falls_back_to_the_history(media, tmp_path):
    recorder = Recorder()
    with ComfyUIStub(drop_ws_at_step=3, step_delay_s=0.05) as server:
        result = _engine(server.url).run(_request(media), recorder, tmp_path)
        polls = [r for r in server.requests if r["path"].startswith("/history/")]
    assert result.frames > 0 and probe_video(result.path).audio_codec == "aac"
    assert len(polls) >= 2  # polled while the render went on without a WebSocket
    assert max(p for p, stage in recorder.calls if stage == "rendering") < 88  # the later steps were never seen


@pytest.mark.integration  # a fake ComfyUI server
def test_cancel_interrupts_the_prompt_and_propagates(media, tmp_path):
    with ComfyUIStub(step_delay_s=0.1) as server:
        with pytest.raises(Canceled):
            _engine(server.url).run(_request(media), Recorder(cancel_at="rendering"), tmp_path)
        prompt_id = next(r for r in server.requests if r["path"] == "/interrupt")["json"]["prompt_id"]
        assert {"delete": [prompt_id]} in [r.get("json") for r in server.requests if r["path"] == "/queue"]
        server.wait_idle()
        events = [event for event, _ in server.history[prompt_id]["status"]["messages"]]
    assert events[-1] == "execution_interrupted"


@pytest.mark.integration  # a fake ComfyUI server
def test_a_render_over_the_time_limit_is_stopped_and_transient(media, tmp_path):
    with ComfyUIStub(step_delay_s=0.2) as server:
        engine = SonicEngine(SonicConfig(urls=(server.url,), connect_timeout_s=0.5, timeout_s=1.0, tick_s=0.2))
        engine.load()
        with pytest.raises(TransientEngineError, match="longer than 1 s") as caught:
            engine.run(_request(media), Recorder(), tmp_path)
        assert [r["json"] for r in server.calls("/interrupt")] == [{"prompt_id": server.calls("/queue")[0]["json"]["delete"][0]}]
        server.wait_idle()
    assert caught.value.code == "engine_timeout"


def test_not_configured_without_comfyui_urls(monkeypatch):
    monkeypatch.delenv("COMFYUI_URLS", raising=False)
    assert "COMFYUI_URLS" in SonicEngine.configuration_problem()
    with pytest.raises(PermanentEngineError) as caught:
        SonicEngine().load()
    assert caught.value.code == "engine_not_configured"
    monkeypatch.setenv("COMFYUI_URLS", "http://gpu-1:8188/, http://gpu-2:8188")
    assert SonicEngine.configuration_problem() is None
    assert SonicConfig.from_env().urls == ("http://gpu-1:8188", "http://gpu-2:8188")


def test_the_configuration_reads_only_the_declared_environment_variables():
    class Recording(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    seen: set[str] = set()
    config = SonicConfig.from_env(Recording(COMFYUI_TIMEOUT_S="900", COMFYUI_SONIC_DTYPE="bf16", COMFYUI_SONIC_VAE="v.safetensors"))
    assert seen == set(sonic.ENV_VARS)
    assert (config.timeout_s, config.dtype, config.vae, config.connect_timeout_s) == (900.0, "bf16", "v.safetensors", 5.0)


def _workflow(config: SonicConfig, request: TalkingHeadRequest) -> dict:
    values = sonic.workflow_values(config, request, image="i.png", audio="a.wav", duration_s=2.5, prefix="mynah/x")
    return sonic.build_workflow(sonic.load_template(), values)


def test_every_input_the_code_sets_exists_in_the_template_and_validates(media, tmp_path):
    template = sonic.load_template()
    for overrides in ({}, {"clip_vision": "clip_vision_h.safetensors", "vae": "svd_vae.safetensors"}):
        config = SonicConfig(urls=("http://x",), **overrides)
        values = sonic.workflow_values(config, _request(media), image="i.png", audio="a.wav", duration_s=0.4, prefix="p")
        assert all(name in template[node]["inputs"] for node, name in values), values
        workflow = sonic.build_workflow(template, values)
        (tmp_path / "i.png").write_bytes(media[0].read_bytes())
        (tmp_path / "a.wav").write_bytes(b"RIFF")
        types = node_types(["svd_xt_1_1.safetensors"], ["unet.pth"], ["clip_vision_h.safetensors"], ["svd_vae.safetensors"])
        error, outputs, node_errors = Validator(types, tmp_path).validate(workflow)
        assert (error, outputs, node_errors) == (None, ["7"], {})
        assert workflow["5"]["inputs"]["duration"] == 1.0  # the node's minimum; it renders min(duration, audio)
        assert ("8" in workflow, "9" in workflow) == (bool(overrides), bool(overrides))
        if overrides:
            assert workflow["5"]["inputs"]["clip_vision"] == ["8", 0] and workflow["5"]["inputs"]["vae"] == ["9", 0]


def test_the_declared_options_are_exactly_those_that_reach_the_server(media):
    config, base = SonicConfig(urls=("http://x",)), _request(media)
    changed = {"inference_steps": 40, "dynamic_scale": 1.5, "motion_scale": 1.3, "temporal_smoothing": False, "lip_sync_correction": False}
    reaching = {name for name, value in changed.items() if _workflow(config, replace(base, **{name: value})) != _workflow(config, base)}
    assert reaching == SonicEngine.options == {"inference_steps", "dynamic_scale"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory. Tried to allocate"}, EngineOutOfMemory),
        ({"exception_type": "torch.cuda.OutOfMemoryError", "exception_message": "Allocation on device"}, EngineOutOfMemory),
        ({"exception_type": "RuntimeError", "exception_message": "Allocation on device \nThis error means you ran out"}, EngineOutOfMemory),
        ({"exception_type": "Exception", "exception_message": "Please download the model first"}, TransientEngineError),
    ],
)
def test_execution_errors_are_classified(data, expected):
    error = sonic.execution_error({**data, "node_type": "SONIC_PreData"})
    assert type(error) is expected and "SONIC_PreData" in error.message


def test_a_file_that_is_not_a_video_is_transient(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(TransientEngineError, match="not a readable MP4"):
        sonic._result(tmp_path / "out.mp4", {})
