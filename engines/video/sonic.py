"""Sonic talking heads through a ComfyUI server with the ComfyUI_Sonic nodes
(smthemex/ComfyUI_Sonic: SONICTLoader, SONIC_PreData, SONICSampler) and
ComfyUI-VideoHelperSuite's VHS_VideoCombine, driven over ComfyUI's HTTP and
WebSocket API. The workflow is data: ``workflows/sonic.json`` (API format).

The protocol, as ComfyUI's server.py, execution.py and main.py implement it:
- ``POST /upload/image`` (multipart: ``image`` file, ``type=input``,
  ``overwrite``) stores a file in the input folder, audio too (the frontend
  uploads audio there as well) and answers ``{name, subfolder, type}``.
- ``GET /ws?clientId=ID``: JSON text frames ``{"type", "data"}`` about prompts
  queued with that client_id, binary frames for previews. It is opened before
  queueing so that no message about the prompt can be missed.
- ``POST /prompt {prompt, client_id}`` -> ``{prompt_id, number, node_errors}``;
  400 ``{error, node_errors}`` when validation fails (unknown node class,
  missing or out-of-range input, a model file the server does not have).
- Execution messages: execution_start, execution_cached, executing (``node``;
  null once the prompt is done and its history written), progress
  (value/max/node, from comfy.utils.ProgressBar), executed, execution_success,
  execution_error (exception_type, exception_message, node_type),
  execution_interrupted.
- ``GET /history/ID``: ``{}`` while queued or running, then ``{ID: {outputs,
  status}}``; VHS_VideoCombine's file is ``outputs[node]["gifs"]`` (filename,
  subfolder, type, format), fetched with ``GET /view``.
- ``POST /interrupt {"prompt_id"}`` stops that prompt if it runs (older
  servers ignore the body and stop whatever runs); ``POST /queue {"delete":
  [ID]}`` drops it while it still waits.

What the nodes do, from their source: SONIC_PreData animates the whole
picture it gets (short side scaled to min_resolution) and ignores its own
face crop, so the adapter uploads the square face crop itself; the frame rate
is fixed at 25 (see SONIC_FPS); the length is min(duration, the audio).

SONICSampler runs a diffusers pipeline that reports steps through tqdm, not
ComfyUI's ProgressBar, so a real server sends no step progress for it: the
job's progress advances per node (and per step or frame where a node reports
them), and the callback is called at least every ``tick_s`` anyway, because it
is where a cancel is noticed.

Configuration comes from the environment (engines never import Django), see
``ENV_VARS``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np

from engines.audio.io import decode_audio, encode_audio
from engines.errors import EngineError, EngineOutOfMemory, PermanentEngineError, TransientEngineError
from engines.video.base import FaceBox, ProgressCallback, TalkingHeadEngine, TalkingHeadRequest, TalkingHeadResult
from engines.video.media import probe_video

logger = logging.getLogger(__name__)

ENV_VARS = (
    "COMFYUI_URLS",  # comma-separated base URLs; the next one on connection failure
    "COMFYUI_CONNECT_TIMEOUT_S",
    "COMFYUI_TIMEOUT_S",  # the whole render, upload to download
    "COMFYUI_SONIC_CHECKPOINT",  # SONICTLoader.sonic_unet, a file in models/sonic
    "COMFYUI_SONIC_SVD_CHECKPOINT",  # ImageOnlyCheckpointLoader.ckpt_name (MODEL, CLIP_VISION, VAE)
    "COMFYUI_SONIC_CLIP_VISION",  # optional: a CLIPVisionLoader file instead of the checkpoint's
    "COMFYUI_SONIC_VAE",  # optional: a VAELoader file instead of the checkpoint's
    "COMFYUI_SONIC_DTYPE",  # SONICTLoader.dtype: fp16, bf16 or fp32
)

WORKFLOW_PATH = Path(__file__).with_name("workflows") / "sonic.json"

# Node ids in workflows/sonic.json.
IMAGE, AUDIO, CHECKPOINT, LOADER, PREDATA, SAMPLER, COMBINE, CLIP_VISION, VAE = "1", "2", "3", "4", "5", "6", "7", "8", "9"

# Sonic's frame rate is fixed: one frame per 640 samples of 16 kHz audio
# (whisper features), every second one generated and the rest interpolated
# by RIFE (SONICTLoader.use_interframe, on in the template). The sampler's fps
# input only conditions SVD and becomes the video's frame rate, so any other
# value would play the frames too fast or too slow for the audio.
SONIC_FPS = 25
# For d seconds Sonic renders 2 * (floor(25 d) // 2) - 1 frames, up to three
# short of the audio; two frames of silence after the speech make the video
# end within a frame of it (VHS_VideoCombine cuts the audio at the video's end).
TAIL_PAD_S = 2 / SONIC_FPS
# SONIC_PreData refuses a duration under 1 s and renders min(duration, the
# audio's own length), so raising a shorter clip's value to 1 s changes nothing.
MIN_NODE_DURATION_S = 1.0
# SONIC_PreData's expand_ratio range. The node computes a face crop with it but
# animates the whole picture it is given (every version so far), so the
# adapter crops; the node's value is kept in range so it is never refused.
NODE_EXPAND_RATIO = (0.1, 1.0)
HTTP_READ_TIMEOUT_S = 60.0
FINISHED_POLL_S = 0.1
OUTAGE_GRACE_S = 60.0  # how long history polling tolerates an unreachable server
MAX_WS_FRAME = 64 * 1024 * 1024  # previews are binary frames; they may be large
_OOM_MARKERS = ("outofmemoryerror", "out of memory", "allocation on device")

# Where each node's work lands in the job's progress: (start %, end %, stage).
_BANDS: dict[str, tuple[int, int, str]] = {
    "LoadImage": (5, 12, "loading"),
    "LoadAudio": (5, 12, "loading"),
    "ImageOnlyCheckpointLoader": (5, 12, "loading"),
    "CLIPVisionLoader": (5, 12, "loading"),
    "VAELoader": (5, 12, "loading"),
    "SONICTLoader": (5, 12, "loading"),
    "SONIC_PreData": (12, 20, "preparing"),
    "SONICSampler": (20, 88, "rendering"),
    "VHS_VideoCombine": (88, 95, "encoding"),
}


@dataclass(frozen=True)
class SonicConfig:
    urls: tuple[str, ...]
    connect_timeout_s: float = 5.0
    timeout_s: float = 1800.0
    sonic_unet: str = "unet.pth"  # the file name ComfyUI_Sonic's README puts in models/sonic
    svd_checkpoint: str = "svd_xt_1_1.safetensors"
    clip_vision: str = ""  # empty: the SVD checkpoint's
    vae: str = ""  # empty: the SVD checkpoint's
    dtype: str = "fp16"
    poll_interval_s: float = 2.0  # history polling once the WebSocket is gone
    tick_s: float = 2.0  # the progress callback (the cancel check) runs at least this often

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SonicConfig:
        env = os.environ if environ is None else environ
        urls = tuple(u.strip().rstrip("/") for u in env.get("COMFYUI_URLS", "").split(",") if u.strip())
        return cls(
            urls=urls,
            connect_timeout_s=float(env.get("COMFYUI_CONNECT_TIMEOUT_S", "5")),
            timeout_s=float(env.get("COMFYUI_TIMEOUT_S", "1800")),
            sonic_unet=env.get("COMFYUI_SONIC_CHECKPOINT", "unet.pth"),
            svd_checkpoint=env.get("COMFYUI_SONIC_SVD_CHECKPOINT", "svd_xt_1_1.safetensors"),
            clip_vision=env.get("COMFYUI_SONIC_CLIP_VISION", ""),
            vae=env.get("COMFYUI_SONIC_VAE", ""),
            dtype=env.get("COMFYUI_SONIC_DTYPE", "fp16"),
        )


def load_template(path: Path = WORKFLOW_PATH) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(path.read_text())
    return template


def node_duration(duration_s: float) -> float:
    """The value for SONIC_PreData.duration: rounded up so that float noise
    can never cut the last frame."""
    return max(MIN_NODE_DURATION_S, math.ceil(duration_s * 1000) / 1000)


def workflow_values(
    config: SonicConfig, request: TalkingHeadRequest, *, image: str, audio: str, duration_s: float, prefix: str
) -> dict[tuple[str, str], Any]:
    """Every input this adapter sets, by (node id, input name)."""
    values: dict[tuple[str, str], Any] = {
        (IMAGE, "image"): image,
        (AUDIO, "audio"): audio,
        (CHECKPOINT, "ckpt_name"): config.svd_checkpoint,
        (LOADER, "sonic_unet"): config.sonic_unet,
        (LOADER, "dtype"): config.dtype,
        (PREDATA, "min_resolution"): request.resolution,
        (PREDATA, "duration"): node_duration(duration_s),
        (PREDATA, "expand_ratio"): min(max(request.expand_ratio, NODE_EXPAND_RATIO[0]), NODE_EXPAND_RATIO[1]),
        (SAMPLER, "seed"): request.seed,
        (SAMPLER, "inference_steps"): request.inference_steps,
        (SAMPLER, "dynamic_scale"): request.dynamic_scale,
        (SAMPLER, "fps"): float(SONIC_FPS),
        (COMBINE, "filename_prefix"): prefix,
    }
    if config.clip_vision:
        values[(CLIP_VISION, "clip_name")] = config.clip_vision
        values[(PREDATA, "clip_vision")] = [CLIP_VISION, 0]
    if config.vae:
        values[(VAE, "vae_name")] = config.vae
        values[(PREDATA, "vae")] = [VAE, 0]
    return values


def build_workflow(template: Mapping[str, Any], values: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """The template with ``values`` set, less the nodes the video does not
    depend on (the optional loaders when unused)."""
    workflow = copy.deepcopy(dict(template))
    for (node_id, name), value in values.items():
        inputs = workflow[node_id]["inputs"]
        if name not in inputs:  # the template and this code disagree: fail loudly
            raise KeyError(f"workflow node {node_id} has no input {name!r}")
        inputs[name] = value
    needed = _ancestors(workflow, COMBINE)
    return {node_id: node for node_id, node in workflow.items() if node_id in needed}


def _ancestors(workflow: Mapping[str, Any], output: str) -> set[str]:
    seen, pending = set(), [output]
    while pending:
        node_id = pending.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        pending.extend(value[0] for value in workflow[node_id]["inputs"].values() if _is_link(value))
    return seen


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def execution_error(data: Mapping[str, Any]) -> EngineError:
    """A ComfyUI execution_error message as the error the job runner retries by."""
    kind = str(data.get("exception_type") or "")
    message = str(data.get("exception_message") or "").strip()
    node = data.get("node_type") or "a node"
    first_line = (message.splitlines() or [kind])[0][:300]
    if any(marker in f"{kind} {message}".lower() for marker in _OOM_MARKERS):
        return EngineOutOfMemory(f"ComfyUI ran out of GPU memory in {node}: {first_line}")
    return TransientEngineError(f"ComfyUI failed in {node}: {kind}: {first_line}", code="engine_error")


def rejection(payload: Any) -> PermanentEngineError:
    """A 400 answer to POST /prompt as a permanent error naming the bad inputs."""
    payload = payload if isinstance(payload, dict) else {}
    reasons = []
    for node_id, info in (payload.get("node_errors") or {}).items():
        for error in info.get("errors", []):
            reasons.append(f"{info.get('class_type')} #{node_id}: {error.get('message')} ({error.get('details')})")
    if not reasons:
        error = payload.get("error")
        reasons.append(f"{error.get('message')} {error.get('details', '')}".strip() if isinstance(error, dict) else str(error))
    return PermanentEngineError("ComfyUI rejected the Sonic workflow: " + "; ".join(reasons)[:1000])


def _history_failure(entry: Mapping[str, Any]) -> EngineError | None:
    status = entry.get("status") or {}
    if status.get("status_str") != "error":
        return None
    for event, data in status.get("messages") or []:
        if event == "execution_error":
            return execution_error(data)
        if event == "execution_interrupted":
            return _interrupted()
    return TransientEngineError("ComfyUI reports the render as failed.", code="engine_error")


def _interrupted() -> TransientEngineError:
    return TransientEngineError("The render was interrupted on the ComfyUI server.")


def face_crop(portrait: np.ndarray, face: FaceBox, size: int, expand_ratio: float) -> tuple[bytes, dict[str, int]]:
    """The picture Sonic animates, as a PNG: the face box grown by
    expand_ratio of its size on every side, squared, kept inside the picture
    (the builtin engine's framing), resized to size x size. SONIC_PreData
    scales the short side to min_resolution, so the video is size x size."""
    from PIL import Image

    height, width = portrait.shape[:2]
    side = min(max(face.width, face.height) * (1 + 2 * expand_ratio), width, height)
    left = float(np.clip(face.left + face.width / 2 - side / 2, 0, width - side))
    top = float(np.clip(face.top + face.height / 2 - side / 2, 0, height - side))
    crop = Image.fromarray(portrait).resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return out.getvalue(), {"left": round(left), "top": round(top), "side": round(side)}


def _public(url: str) -> str:
    """The URL without credentials, for the result's info."""
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


class _RenderTimeout(Exception):
    pass


class _Progress:
    """Maps ComfyUI's execution messages onto the job's progress: monotonic,
    reported on change and at least every ``tick_s`` (the callback is the
    cancel check, and a long sampler step sends nothing)."""

    def __init__(self, callback: ProgressCallback, workflow: Mapping[str, Any], tick_s: float) -> None:
        self._callback = callback
        self._classes = {node_id: node["class_type"] for node_id, node in workflow.items()}
        self._tick_s = tick_s
        self.percent, self.stage = 0, "starting"
        self._reported: tuple[int, str] | None = None
        self._last_call = 0.0

    def report(self, percent: float, stage: str | None = None) -> None:
        self.percent = max(self.percent, min(int(percent), 99))
        self.stage = stage or self.stage
        due = time.monotonic() - self._last_call >= self._tick_s
        if (self.percent, self.stage) != self._reported or due:
            self._reported, self._last_call = (self.percent, self.stage), time.monotonic()
            self._callback(self.percent, self.stage)

    def tick(self) -> None:
        self.report(self.percent)

    def node_started(self, node_id: str) -> None:
        start, _, stage = self._band(node_id)
        self.report(start, stage)

    def node_progress(self, node_id: str, value: float, maximum: float) -> None:
        start, end, stage = self._band(node_id)
        share = min(max(value / maximum, 0.0), 1.0) if maximum else 0.0
        self.report(start + (end - start) * share, stage)

    def _band(self, node_id: str) -> tuple[int, int, str]:
        return _BANDS.get(self._classes.get(str(node_id), ""), (self.percent, self.percent, self.stage))


class _Server:
    """One ComfyUI instance: its HTTP calls and WebSocket, errors classified."""

    def __init__(self, url: str, http: Any, connect_timeout_s: float) -> None:
        self.url = url
        self._http = http
        self._connect_timeout_s = connect_timeout_s

    def upload(self, filename: str, data: bytes, content_type: str) -> str:
        """Store a file in the input folder; the value a loader node takes."""
        fields = {"image": (filename, data, content_type), "type": "input", "overwrite": "true"}
        stored = self._json("POST", "/upload/image", fields=fields)
        name, subfolder = stored.get("name") or filename, stored.get("subfolder") or ""
        return f"{subfolder}/{name}" if subfolder else name

    def queue(self, workflow: Mapping[str, Any], client_id: str) -> str:
        answer = self._json("POST", "/prompt", body={"prompt": workflow, "client_id": client_id})
        if not answer.get("prompt_id"):
            raise TransientEngineError("ComfyUI queued the prompt without a prompt_id.")
        return str(answer["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry; None until it finished."""
        entry = self._json("GET", f"/history/{prompt_id}").get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def cancel(self, prompt_id: str) -> None:
        """Best effort: drop the prompt if it still waits, stop it if it runs."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                # A short read timeout: a cancel must not hold the worker on a hung server.
                self._request("POST", path, body=body, read_timeout=self._connect_timeout_s).release_conn()
            except EngineError as exc:
                logger.warning("could not cancel the ComfyUI prompt: %s", exc.message)

    def download(self, output: Mapping[str, Any], destination: Path) -> None:
        query = {"filename": output["filename"], "subfolder": output.get("subfolder", ""), "type": output.get("type", "output")}
        response = self._request("GET", "/view?" + urlencode(query), stream=True)
        try:
            with destination.open("wb") as out:
                for piece in response.stream(256 * 1024):
                    out.write(piece)
        except self._http_errors() as exc:
            raise TransientEngineError(f"the video download broke off ({type(exc).__name__})") from None
        finally:
            response.release_conn()

    @contextlib.contextmanager
    def websocket(self, client_id: str) -> Iterator[Any]:
        """The WebSocket for ``client_id``, closed on leaving the block."""
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        parts = urlsplit(self.url)
        url = urlunsplit(parts._replace(scheme="wss" if parts.scheme == "https" else "ws")) + f"/ws?clientId={client_id}"
        opened = False
        try:
            # legacy=False: the context-manager form, the one websockets keeps.
            with connect(
                url, open_timeout=self._connect_timeout_s, proxy=None, max_size=MAX_WS_FRAME, compression=None, legacy=False
            ) as ws:
                opened = True
                yield ws
        except (OSError, TimeoutError, WebSocketException) as exc:
            if opened:  # not ours to classify: raised by the block
                raise
            raise TransientEngineError(f"cannot open ComfyUI's WebSocket ({type(exc).__name__})") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            payload = json.loads(response.data or b"{}")
        except ValueError:
            raise TransientEngineError(f"ComfyUI answered {path} with something other than JSON") from None
        return payload if isinstance(payload, dict) else {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        fields: Any = None,
        body: Any = None,
        stream: bool = False,
        read_timeout: float = HTTP_READ_TIMEOUT_S,
    ) -> Any:
        import urllib3

        timeout = urllib3.Timeout(connect=self._connect_timeout_s, read=read_timeout)
        options: dict[str, Any] = {"fields": fields} if fields is not None else {}
        if body is not None:
            options = {"body": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}}
        try:
            response = self._http.request(
                method, self.url + path, timeout=timeout, preload_content=not stream, redirect=False, retries=False, **options
            )
        except self._http_errors() as exc:
            raise TransientEngineError(f"cannot reach ComfyUI ({type(exc).__name__})") from None
        if response.status >= 400:
            raise self._refusal(path, response)
        return response

    def _refusal(self, path: str, response: Any) -> EngineError:
        data = response.data or b""  # reads the body of a streamed response too
        response.release_conn()
        if response.status >= 500 or response.status in (404, 408, 429):
            return TransientEngineError(f"ComfyUI answered {path.split('?')[0]} with {response.status}")
        if path == "/prompt":
            try:
                return rejection(json.loads(data))
            except ValueError:
                pass
        return PermanentEngineError(f"ComfyUI refused {path.split('?')[0]} ({response.status}): {data[:300].decode('utf-8', 'replace')}")

    @staticmethod
    def _http_errors() -> tuple[type[Exception], ...]:
        import urllib3

        return (urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True)
class _Inputs:
    image: bytes  # PNG
    crop: dict[str, int]
    wav: bytes
    duration_s: float


@dataclass(frozen=True)
class _Submitted:
    server: _Server
    workflow: dict[str, Any]
    prompt_id: str
    ws: Any  # open until ``closing`` closes
    closing: contextlib.ExitStack


class SonicEngine(TalkingHeadEngine):
    name = "sonic"
    # SONICSampler takes inference_steps and dynamic_scale. Sonic has no input
    # for head motion (its motion buckets come from the audio), smoothing or
    # lip-sync correction, so those are refused at submit when not default.
    options = frozenset({"inference_steps", "dynamic_scale"})
    frame_rates = (SONIC_FPS,)

    def __init__(self, config: SonicConfig | None = None) -> None:
        super().__init__()
        self.config = config or SonicConfig.from_env()
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()
        self._http: Any = None
        self._template: dict[str, Any] = {}

    @classmethod
    def configuration_problem(cls) -> str | None:
        if SonicConfig.from_env().urls:
            return None
        return "COMFYUI_URLS is not set: no ComfyUI server with the Sonic nodes is configured."

    def _load(self) -> None:
        import urllib3

        if not self.config.urls:
            raise PermanentEngineError("No ComfyUI server is configured (COMFYUI_URLS).", code="engine_not_configured")
        self._template = load_template()
        self._http = urllib3.PoolManager(num_pools=8, maxsize=8, retries=False)

    def run(self, request: TalkingHeadRequest, progress: ProgressCallback, workdir: Path) -> TalkingHeadResult:
        deadline = time.monotonic() + self.config.timeout_s
        inputs = self._inputs(request, workdir)
        progress(2, "uploading")
        token = uuid.uuid4().hex
        submitted = self._submit(request, inputs, token)
        server, prompt_id, ws = submitted.server, submitted.prompt_id, submitted.ws
        queued_at = time.monotonic()
        tracker = _Progress(progress, submitted.workflow, self.config.tick_s)
        with submitted.closing:
            try:
                tracker.report(3, "queued")
                entry = self._await(server, ws, prompt_id, tracker, deadline)
            except EngineError:  # the prompt failed on the server, or the server is gone
                raise
            except _RenderTimeout:
                server.cancel(prompt_id)  # free the GPU: nobody will fetch this video
                raise TransientEngineError(f"The render took longer than {self.config.timeout_s:.0f} s.", code="engine_timeout") from None
            except BaseException:  # Canceled, the worker's time limit: stop work nobody will fetch
                server.cancel(prompt_id)
                raise
        render_s = time.monotonic() - queued_at
        tracker.report(96, "downloading")
        path = workdir / f"sonic-{token}.mp4"
        server.download(_video_output(entry), path)
        info = {"prompt_id": prompt_id, "server": _public(server.url), "render_s": round(render_s, 2), "crop": inputs.crop}
        return _result(path, info)

    def _inputs(self, request: TalkingHeadRequest, workdir: Path) -> _Inputs:
        """The face crop as a PNG, and the audio as a 16-bit WAV we write, so
        the server never parses the client's files; the duration is the
        decoded audio's, never a value from the client."""
        from engines.video.inputs import load_portrait

        if request.fps != SONIC_FPS:
            raise PermanentEngineError(
                f"Sonic renders {SONIC_FPS} frames per second; fps={request.fps} is not available.", code="unsupported_option"
            )
        try:
            samples, rate = decode_audio(request.audio_path)
        except Exception as exc:  # PyAV raises its own error types for undecodable data
            raise PermanentEngineError(f"The audio cannot be decoded ({type(exc).__name__}).", code="audio_unreadable") from None
        if samples.size == 0:
            raise PermanentEngineError("The audio is empty.", code="audio_too_short")
        samples = np.concatenate([samples, np.zeros(round(TAIL_PAD_S * rate), np.float32)])
        wav = workdir / "sonic-input.wav"
        encode_audio(samples, rate, wav, "wav")
        image, crop = face_crop(load_portrait(request.image_path), request.face, request.resolution, request.expand_ratio)
        return _Inputs(image, crop, wav.read_bytes(), samples.size / rate)

    def _submit(self, request: TalkingHeadRequest, inputs: _Inputs, token: str) -> _Submitted:
        """Upload, open the WebSocket and queue on the first instance that
        answers; a later one when an instance cannot be reached."""
        failures = []
        for url in self._urls_in_turn():
            server = _Server(url, self._http, self.config.connect_timeout_s)
            try:
                return self._submit_to(server, request, inputs, token)
            except TransientEngineError as exc:
                failures.append(f"{_public(url)}: {exc.message}")
        raise TransientEngineError("No ComfyUI server took the render: " + "; ".join(failures[-3:]))

    def _submit_to(self, server: _Server, request: TalkingHeadRequest, inputs: _Inputs, token: str) -> _Submitted:
        image = server.upload(f"mynah_{token}.png", inputs.image, "image/png")
        audio = server.upload(f"mynah_{token}.wav", inputs.wav, "audio/wav")
        values = workflow_values(self.config, request, image=image, audio=audio, duration_s=inputs.duration_s, prefix=f"mynah/{token}")
        workflow = build_workflow(self._template, values)
        client_id = uuid.uuid4().hex
        with contextlib.ExitStack() as attempt:  # closes the WebSocket if queueing fails
            ws = attempt.enter_context(server.websocket(client_id))
            prompt_id = server.queue(workflow, client_id)
            return _Submitted(server, workflow, prompt_id, ws, attempt.pop_all())

    def _urls_in_turn(self) -> list[str]:
        """All instances, starting one further each render (spreads the load)."""
        with self._turn_lock:
            start = next(self._turn) % len(self.config.urls)
        return list(self.config.urls[start:] + self.config.urls[:start])

    def _await(self, server: _Server, ws: Any, prompt_id: str, tracker: _Progress, deadline: float) -> dict[str, Any]:
        """The prompt's history entry once it finished. A dropped WebSocket
        (proxy hiccup, server restart) is not the render's end: the history
        is polled until the prompt is done."""
        from websockets.exceptions import ConnectionClosed

        try:
            self._follow(ws, prompt_id, tracker, deadline)
        except (ConnectionClosed, OSError):
            logger.warning("ComfyUI's WebSocket closed mid-render; polling the history")
            return self._poll_history(server, prompt_id, tracker, deadline, self.config.poll_interval_s)
        # execution_success comes a moment before the history is written.
        return self._poll_history(server, prompt_id, tracker, deadline, FINISHED_POLL_S)

    def _follow(self, ws: Any, prompt_id: str, tracker: _Progress, deadline: float) -> None:
        """Read messages until the prompt finished; raise for its failure."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _RenderTimeout
            try:
                frame = ws.recv(timeout=min(self.config.tick_s, remaining))
            except TimeoutError:
                tracker.tick()
                continue
            if isinstance(frame, bytes):  # a preview image
                continue
            if _handle(_message(frame), prompt_id, tracker):
                return

    def _poll_history(self, server: _Server, prompt_id: str, tracker: _Progress, deadline: float, interval: float) -> dict[str, Any]:
        unreachable_since: float | None = None
        while True:
            try:
                entry = server.history(prompt_id)
                unreachable_since = None
            except TransientEngineError:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > OUTAGE_GRACE_S:
                    raise
                entry = None
            if entry is not None:
                failure = _history_failure(entry)
                if failure is not None:
                    raise failure
                return entry
            if time.monotonic() >= deadline:
                raise _RenderTimeout
            tracker.tick()
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def _message(frame: str) -> dict[str, Any]:
    try:
        message = json.loads(frame)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _handle(message: Mapping[str, Any], prompt_id: str, tracker: _Progress) -> bool:
    """Apply one WebSocket message; True once the prompt finished."""
    kind, data = message.get("type"), message.get("data")
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False  # queue status, another client's prompt
    if kind == "execution_start":
        tracker.report(4, "starting")
    elif kind == "executing":
        if data.get("node") is None:
            return True
        tracker.node_started(str(data.get("display_node") or data["node"]))
    elif kind == "progress" and data.get("node") is not None:
        tracker.node_progress(str(data["node"]), float(data.get("value") or 0), float(data.get("max") or 0))
    elif kind == "execution_success":
        return True
    elif kind == "execution_error":
        raise execution_error(data)
    elif kind == "execution_interrupted":
        raise _interrupted()
    return False


def _video_output(entry: Mapping[str, Any]) -> dict[str, Any]:
    node_output = (entry.get("outputs") or {}).get(COMBINE) or {}
    videos = [item for item in node_output.get("gifs", []) if item.get("filename") and str(item.get("format", "")).startswith("video/")]
    if not videos:
        raise TransientEngineError("ComfyUI finished without a video output.")
    video: dict[str, Any] = videos[-1]
    return video


def _result(path: Path, info: dict[str, Any]) -> TalkingHeadResult:
    try:
        video = probe_video(path)
    except Exception as exc:  # ValueError (no video stream) or PyAV's errors for a broken file
        raise TransientEngineError(f"ComfyUI returned a file that is not a readable MP4 ({type(exc).__name__}).") from None
    if video.audio_codec is None:
        raise TransientEngineError("ComfyUI returned a video without its audio.")
    return TalkingHeadResult(
        path=path,
        duration_s=video.duration_s,
        size_bytes=path.stat().st_size,
        width=video.width,
        height=video.height,
        fps=video.fps,
        frames=video.frames,
        info=info,
    )
