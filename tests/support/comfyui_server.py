"""A stand-in for a ComfyUI server with the Sonic nodes (smthemex/ComfyUI_Sonic)
and ComfyUI-VideoHelperSuite, speaking ComfyUI's protocol as its server.py,
execution.py and main.py implement it:

- ``POST /upload/image`` (multipart ``image`` file, ``type``, ``overwrite``,
  ``subfolder``) -> ``{name, subfolder, type}``; the file lands in the input folder.
- ``POST /prompt {prompt, client_id}``: validated like execution.validate_prompt
  (unknown class_type, missing required input, bad link, value out of
  min/max, value not in a combo, a LoadImage/LoadAudio file that is not
  there) -> 400 ``{error, node_errors}``; else ``{prompt_id, number, node_errors}``.
- ``GET /ws?clientId=``: ``status`` on connect; then for each prompt of that
  client execution_start, execution_cached (loaders already run with the
  same inputs are cached, as ComfyUI's cache does), executing per node,
  progress (value/max/node), binary preview frames, executed (the video
  node's ``gifs``), execution_success / execution_error /
  execution_interrupted, and ``executing`` with node null after the history
  is written.
- ``GET /history/<id>`` ({} until the prompt finished), ``GET /view``,
  ``POST /interrupt`` (optionally ``{"prompt_id"}``), ``POST /queue {"delete"}``.

It has no model: the "render" is the uploaded picture with a moving bar and
the uploaded audio, H.264 + AAC (``engines.video.media.write_mp4``), sized
and timed as the real nodes do it: the whole picture with its short side
scaled to min_resolution (multiples of 64); one frame per 640 samples of
min(duration, the audio) at 16 kHz, every second one generated and the rest
interpolated (2n - 1 frames with use_interframe), played at the sampler's fps;
the audio padded or cut to the video like VHS_VideoCombine (apad + -shortest).

Unlike the real SONICSampler (a diffusers pipeline that reports steps to
tqdm only), it sends ``progress`` for the sampler's steps unless
``sampler_progress=False``; VHS_VideoCombine reports frames as the real one does.

A raw ASGI app served by uvicorn in a thread: ``with ComfyUIStub(...) as server``.
Knobs: ``oom_above`` (min_resolution above it fails with torch's
OutOfMemoryError), ``drop_ws_at_step`` (closes every WebSocket at that
sampler step; the render goes on), ``step_delay_s`` (a slow render, for
/interrupt), ``missing_nodes`` (class types the server lacks).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import mimetypes
import shutil
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from core.redis_server import free_port
from engines.audio.io import decode_audio
from engines.video.media import write_mp4

MAX_SEED = 2**31 - 1
VIDEO_FORMATS = ["image/gif", "image/webp", "video/h264-mp4", "video/h265-mp4", "video/webm", "video/ProRes", "video/av1-webm"]
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 4.50 GiB. GPU 0 has a total capacity of 23.64 GiB of which 1.21 GiB is free. "
    "Of the allocated memory 20.12 GiB is allocated by PyTorch.\n"
    "This error means you ran out of memory on your GPU.\n\n"
    "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."
)
_GONE, _DROP = object(), object()
_LOADERS = {"ImageOnlyCheckpointLoader", "SONICTLoader", "CLIPVisionLoader", "VAELoader"}  # cacheable across prompts


@dataclass(frozen=True)
class NodeType:
    required: dict[str, tuple]  # name -> (type or combo list, options), as INPUT_TYPES declares
    returns: tuple[str, ...]
    optional: dict[str, tuple] = field(default_factory=dict)
    output_node: bool = False
    file_input: str | None = None  # VALIDATE_INPUTS checks this names a file in the input folder


def node_types(checkpoints: list[str], sonic: list[str], clip_vision: list[str], vaes: list[str]) -> dict[str, NodeType]:
    """The INPUT_TYPES of the nodes the Sonic workflow uses (ComfyUI nodes.py,
    comfy_extras, ComfyUI_Sonic sonic_node.py, VHS videohelpersuite/nodes.py)."""
    image_or_latent = ("IMAGE", {"accepts": ("IMAGE", "LATENT")})
    return {
        "LoadImage": NodeType({"image": ([], {"image_upload": True})}, ("IMAGE", "MASK"), file_input="image"),
        "LoadAudio": NodeType({"audio": ([], {"audio_upload": True})}, ("AUDIO",), file_input="audio"),
        "ImageOnlyCheckpointLoader": NodeType({"ckpt_name": (checkpoints, {})}, ("MODEL", "CLIP_VISION", "VAE")),
        "CLIPVisionLoader": NodeType({"clip_name": (clip_vision, {})}, ("CLIP_VISION",)),
        "VAELoader": NodeType({"vae_name": (vaes, {})}, ("VAE",)),
        "SONICTLoader": NodeType(
            {
                "model": ("MODEL", {}),
                "sonic_unet": (["none", *sonic], {}),
                "ip_audio_scale": ("FLOAT", {"default": 1.0, "min": 0.5, "max": 2.0, "step": 0.1}),
                "use_interframe": ("BOOLEAN", {"default": True}),
                "dtype": (["fp16", "fp32", "bf16"], {}),
            },
            ("MODEL_SONIC", "DTYPE"),
        ),
        "SONIC_PreData": NodeType(
            {
                "clip_vision": ("CLIP_VISION", {}),
                "vae": ("VAE", {}),
                "audio": ("AUDIO", {}),
                "image": ("IMAGE", {}),
                "weight_dtype": ("DTYPE", {}),
                "min_resolution": ("INT", {"default": 512, "min": 128, "max": 2048, "step": 64}),
                "duration": ("FLOAT", {"default": 10.0, "min": 1.0, "max": 100000000000.0, "step": 0.1}),
                "expand_ratio": ("FLOAT", {"default": 0.5, "min": 0.1, "max": 1.0, "step": 0.1}),
            },
            ("SONIC_PREDATA",),
        ),
        "SONICSampler": NodeType(
            {
                "model": ("MODEL_SONIC", {}),
                "data_dict": ("SONIC_PREDATA", {}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "inference_steps": ("INT", {"default": 25, "min": 1, "max": 1024, "step": 1}),
                "dynamic_scale": ("FLOAT", {"default": 1.0, "min": 0.5, "max": 2.0, "step": 0.1}),
                "fps": ("FLOAT", {"default": 25.0, "min": 5.0, "max": 120.0, "step": 0.5}),
            },
            ("IMAGE", "FLOAT"),
        ),
        "VHS_VideoCombine": NodeType(
            {
                "images": image_or_latent,
                "frame_rate": ("FLOAT", {"default": 8, "min": 1, "step": 1, "accepts": ("FLOAT", "INT")}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 100, "step": 1}),
                "filename_prefix": ("STRING", {"default": "AnimateDiff"}),
                "format": (VIDEO_FORMATS, {}),
                "pingpong": ("BOOLEAN", {"default": False}),
                "save_output": ("BOOLEAN", {"default": True}),
            },
            ("VHS_FILENAMES",),
            optional={"audio": ("AUDIO", {}), "meta_batch": ("VHS_BatchManager", {}), "vae": ("VAE", {})},
            output_node=True,
        ),
    }


class NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type, self.message = exception_type, message


class Interrupted(Exception):
    pass


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    client_id: str | None
    outputs: list[str]


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


class Validator:
    """execution.validate_prompt, for the node types this server knows."""

    def __init__(self, types: dict[str, NodeType], input_dir: Path) -> None:
        self.types, self.input_dir = types, input_dir

    def validate(self, prompt: dict[str, Any]) -> tuple[dict | None, list[str], dict[str, Any]]:
        """(error, good outputs, node_errors); error None when the prompt may run."""
        outputs = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return (
                    _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", f"Node ID '#{node_id}'"),
                    [],
                    {},
                )
            if node["class_type"] not in self.types:
                return (
                    _error("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.", f"Node ID '#{node_id}'"),
                    [],
                    {},
                )
            if self.types[node["class_type"]].output_node:
                outputs.append(node_id)
        if not outputs:
            return _error("prompt_no_outputs", "Prompt has no outputs"), [], {}
        validated: dict[str, tuple[bool, list]] = {}
        good, node_errors = [], {}
        for output in outputs:
            if self._node(prompt, output, validated):
                good.append(output)
                continue
            for node_id, (ok, reasons) in validated.items():
                if not ok and reasons:
                    entry = node_errors.setdefault(
                        node_id, {"errors": reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]}
                    )
                    entry["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for info in node_errors.values() for e in info["errors"])
            return _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), [], node_errors
        return None, good, node_errors

    def _node(self, prompt: dict[str, Any], node_id: str, validated: dict) -> bool:
        if node_id in validated:
            return validated[node_id][0]
        node = prompt[node_id]
        spec = self.types[node["class_type"]]
        inputs = node.get("inputs") or {}
        errors, valid = [], True
        for name, (kind, options) in {**spec.required, **spec.optional}.items():
            if name not in inputs:
                if name in spec.required:
                    errors.append(_error("required_input_missing", "Required input is missing", name, input_name=name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                reason = self._link(prompt, name, value, kind, options)
                if reason is not None:
                    errors.append(reason)
                elif not self._node(prompt, value[0], validated):
                    valid = False
                continue
            reason = self._value(name, value, kind, options, checked_by_node=name == spec.file_input)
            if reason is not None:
                errors.append(reason)
        named_file = spec.file_input and spec.file_input in inputs and not isinstance(inputs[spec.file_input], list)
        if named_file and not (self.input_dir / str(inputs[spec.file_input])).is_file():
            kind = "image" if spec.file_input == "image" else "audio"
            errors.append(
                _error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"{spec.file_input} - Invalid {kind} file: {inputs[spec.file_input]}",
                    input_name=spec.file_input,
                )
            )
        validated[node_id] = (valid and not errors, errors)
        return validated[node_id][0]

    def _link(self, prompt: dict[str, Any], name: str, value: list, kind: Any, options: dict) -> dict | None:
        if len(value) != 2 or value[0] not in prompt:
            return _error(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                name,
                input_name=name,
                received_value=value,
            )
        returns = self.types[prompt[value[0]]["class_type"]].returns
        received = returns[value[1]] if isinstance(value[1], int) and 0 <= value[1] < len(returns) else None
        if received not in options.get("accepts", (kind,)):
            return _error(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{name}, received_type({received}) mismatch input_type({kind})",
                input_name=name,
                received_type=received,
            )
        return None

    def _value(self, name: str, value: Any, kind: Any, options: dict, *, checked_by_node: bool) -> dict | None:
        convert = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(kind) if isinstance(kind, str) else None
        try:
            value = convert(value) if convert else value
        except (TypeError, ValueError) as exc:
            return _error(
                "invalid_input_type",
                f"Failed to convert an input value to a {kind} value",
                f"{name}, {value}, {exc}",
                input_name=name,
                received_value=value,
            )
        if "min" in options and value < options["min"]:
            return _error(
                "value_smaller_than_min", f"Value {value} smaller than min of {options['min']}", name, input_name=name, received_value=value
            )
        if "max" in options and value > options["max"]:
            return _error(
                "value_bigger_than_max", f"Value {value} bigger than max of {options['max']}", name, input_name=name, received_value=value
            )
        if isinstance(kind, list) and not checked_by_node and value not in kind:
            return _error(
                "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {kind}", input_name=name, received_value=value
            )
        return None


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """multipart/form-data -> (text fields, files {field: {filename, content_type, data}})."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            fields[name] = data.decode()
        else:
            files[name] = {"filename": part.get_filename(), "content_type": part.get_content_type(), "data": data}
    return fields, files


class ComfyUIServer:
    """The state and the ASGI app; ``ComfyUIStub`` serves it."""

    def __init__(
        self,
        *,
        oom_above: int | None = None,
        drop_ws_at_step: int | None = None,
        step_delay_s: float = 0.0,
        sampler_progress: bool = True,
        missing_nodes: frozenset[str] = frozenset(),
        checkpoints: tuple[str, ...] = ("svd_xt_1_1.safetensors",),
        sonic_models: tuple[str, ...] = ("unet.pth",),
        clip_vision: tuple[str, ...] = ("clip_vision_h.safetensors",),
        vaes: tuple[str, ...] = ("svd_vae.safetensors",),
    ) -> None:
        self.oom_above, self.drop_ws_at_step, self.step_delay_s = oom_above, drop_ws_at_step, step_delay_s
        self.sampler_progress = sampler_progress
        self._root = Path(tempfile.mkdtemp(prefix="comfyui-stub-"))
        self.input_dir, self.output_dir = self._root / "input", self._root / "output"
        self.input_dir.mkdir()
        self.output_dir.mkdir()
        types = node_types(list(checkpoints), list(sonic_models), list(clip_vision), list(vaes))
        self.types = {name: spec for name, spec in types.items() if name not in missing_nodes}
        self.url = ""  # set once served
        self.requests: list[dict[str, Any]] = []
        self.history: dict[str, dict[str, Any]] = {}
        self._cache: set[str] = set()
        self._number = 0
        self._pending: list[QueueItem] = []
        self._running: str | None = None
        self._interrupt = threading.Event()
        self._stopping = False
        self._cond = threading.Condition()
        self._sockets: dict[str, asyncio.Queue] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker = threading.Thread(target=self._work, daemon=True)

    # -- bookkeeping -----------------------------------------------------------------------------

    @property
    def prompts(self) -> list[dict[str, Any]]:
        return [r["json"]["prompt"] for r in self.requests if r["path"] == "/prompt" and r["method"] == "POST"]

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._interrupt.set()
            self._cond.notify_all()
        self._worker.join(timeout=10)
        for sid in list(self._sockets):
            self._post(sid, _GONE)
        shutil.rmtree(self._root, ignore_errors=True)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until nothing is queued or running (a render left behind by a test)."""
        end = time.monotonic() + timeout
        while (self._pending or self._running) and time.monotonic() < end:
            time.sleep(0.02)

    # -- ASGI ---------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self._loop = asyncio.get_running_loop()
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            status, content_type, payload = self._http(scope, body)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": payload})

    def _http(self, scope: dict, body: bytes) -> tuple[int, str, bytes]:
        path = scope["path"].removeprefix("/api") if scope["path"].startswith("/api/") else scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode(), keep_blank_values=True).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        entry: dict[str, Any] = {"method": scope["method"], "path": path, "query": query}
        if headers.get("content-type", "").startswith("multipart/form-data"):
            entry["form"], entry["files"] = parse_multipart(headers["content-type"], body)
        elif body:
            try:
                entry["json"] = json.loads(body)
            except ValueError:
                entry["body"] = body
        self.requests.append(entry)
        route = {
            ("POST", "/upload/image"): self._upload,
            ("POST", "/prompt"): self._prompt,
            ("GET", "/prompt"): self._queue_info,
            ("POST", "/interrupt"): self._interrupt_prompt,
            ("POST", "/queue"): self._queue_edit,
            ("GET", "/view"): self._view,
            ("GET", "/history"): self._history,
        }.get((scope["method"], path))
        if route is None and scope["method"] == "GET" and path.startswith("/history/"):
            return self._json(200, self._history_of(path.removeprefix("/history/")))
        if route is None:
            return 404, "text/plain", b"404: Not Found"
        return route(entry)

    @staticmethod
    def _json(status: int, payload: Any) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps(payload).encode()

    def _upload(self, entry: dict) -> tuple[int, str, bytes]:
        image = entry.get("files", {}).get("image")
        if not image or not image["filename"]:
            return 400, "text/plain", b""
        form = entry["form"]
        upload_type = form.get("type") or "input"
        base = {"input": self.input_dir, "output": self.output_dir}.get(upload_type, self.input_dir)
        subfolder = form.get("subfolder", "")
        target = (base / subfolder / image["filename"]).resolve()
        if not target.is_relative_to(base.resolve()):
            return 400, "text/plain", b""
        target.parent.mkdir(parents=True, exist_ok=True)
        name = image["filename"]
        if form.get("overwrite") not in ("true", "1"):
            stem, suffix, counter = target.stem, target.suffix, 1
            while target.exists():
                name = f"{stem} ({counter}){suffix}"
                target, counter = target.with_name(name), counter + 1
        target.write_bytes(image["data"])
        return self._json(200, {"name": name, "subfolder": subfolder, "type": upload_type})

    def _prompt(self, entry: dict) -> tuple[int, str, bytes]:
        data = entry.get("json") or {}
        if "prompt" not in data:
            return self._json(
                400, {"error": {"type": "no_prompt", "message": "No prompt provided", "details": "", "extra_info": {}}, "node_errors": {}}
            )
        error, outputs, node_errors = Validator(self.types, self.input_dir).validate(data["prompt"])
        if error is not None:
            return self._json(400, {"error": error, "node_errors": node_errors})
        prompt_id = str(uuid.uuid4())
        with self._cond:
            number, self._number = self._number, self._number + 1
            self._pending.append(QueueItem(number, prompt_id, data["prompt"], data.get("client_id"), outputs))
            self._cond.notify_all()
        return self._json(200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _queue_info(self, entry: dict) -> tuple[int, str, bytes]:
        return self._json(200, {"exec_info": {"queue_remaining": self._remaining()}})

    def _remaining(self) -> int:
        return len(self._pending) + (1 if self._running else 0)

    def _interrupt_prompt(self, entry: dict) -> tuple[int, str, bytes]:
        prompt_id = (entry.get("json") or {}).get("prompt_id")
        with self._cond:
            if self._running and (prompt_id is None or prompt_id == self._running):
                self._interrupt.set()
        return 200, "text/plain", b""

    def _queue_edit(self, entry: dict) -> tuple[int, str, bytes]:
        data = entry.get("json") or {}
        with self._cond:
            if data.get("clear"):
                self._pending.clear()
            doomed = set(data.get("delete") or [])
            self._pending = [item for item in self._pending if item.prompt_id not in doomed]
        return 200, "text/plain", b""

    def _history(self, entry: dict) -> tuple[int, str, bytes]:
        return self._json(200, self.history)

    def _history_of(self, prompt_id: str) -> dict[str, Any]:
        return {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}

    def _view(self, entry: dict) -> tuple[int, str, bytes]:
        query = entry["query"]
        filename = query.get("filename", "")
        base = {"input": self.input_dir, "output": self.output_dir}.get(query.get("type", "output"))
        if not filename or filename.startswith("/") or ".." in filename or base is None:
            return 400, "text/plain", b""
        folder = (base / query.get("subfolder", "")).resolve()
        if not folder.is_relative_to(base.resolve()):
            return 403, "text/plain", b""
        file = folder / Path(filename).name
        if not file.is_file():
            return 404, "text/plain", b""
        return 200, mimetypes.guess_type(file.name)[0] or "application/octet-stream", file.read_bytes()

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        query = parse_qs(scope["query_string"].decode())
        sid = query.get("clientId", [""])[0] or uuid.uuid4().hex
        self.requests.append({"method": "GET", "path": "/ws", "query": {"clientId": sid}})
        outbox: asyncio.Queue = asyncio.Queue()
        self._sockets[sid] = outbox  # a reconnect with the same id replaces the old socket, as in ComfyUI
        status = {"status": {"exec_info": {"queue_remaining": self._remaining()}}, "sid": sid}
        outbox.put_nowait(json.dumps({"type": "status", "data": status}))

        async def watch() -> None:
            while (await receive())["type"] != "websocket.disconnect":
                pass
            outbox.put_nowait(_GONE)

        watcher = asyncio.create_task(watch())
        try:
            while (item := await outbox.get()) is not _GONE:
                if item is _DROP:
                    await send({"type": "websocket.close", "code": 1011})
                    break
                key = "bytes" if isinstance(item, bytes) else "text"
                await send({"type": "websocket.send", key: item})
        except OSError:  # the client went away mid-send
            pass
        finally:
            watcher.cancel()
            if self._sockets.get(sid) is outbox:
                del self._sockets[sid]

    # -- messages -------------------------------------------------------------------------------

    def send(self, event: str, data: Any, sid: str | None) -> None:
        """PromptServer.send_sync: JSON to one client, or to all when sid is None."""
        payload = json.dumps({"type": event, "data": data})
        for target in [sid] if sid is not None else list(self._sockets):
            self._post(target, payload)

    def send_preview(self, sid: str | None) -> None:
        # BinaryEventTypes.PREVIEW_IMAGE, then the image type (1 = JPEG) and its bytes.
        if sid is not None:
            self._post(sid, struct.pack(">I", 1) + struct.pack(">I", 1) + b"\xff\xd8\xff\xe0 preview \xff\xd9")

    def drop_sockets(self) -> None:
        for sid in list(self._sockets):
            self._post(sid, _DROP)

    def _post(self, sid: str, item: Any) -> None:
        outbox, loop = self._sockets.get(sid), self._loop
        if outbox is not None and loop is not None:
            loop.call_soon_threadsafe(outbox.put_nowait, item)

    # -- execution (main.prompt_worker + execution.PromptExecutor) --------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = self._pending.pop(0)
                self._running = item.prompt_id
                self._interrupt.clear()
            try:
                Execution(self, item).run()
            finally:
                with self._cond:
                    self._running = None
            self.send("status", {"status": {"exec_info": {"queue_remaining": self._remaining()}}}, None)

    def check_interrupt(self) -> None:
        if self._interrupt.is_set():
            raise Interrupted

    def signature(self, prompt: dict[str, Any], node_id: str) -> str:
        node = prompt[node_id]
        inputs = {k: self.signature(prompt, v[0]) + f"[{v[1]}]" if isinstance(v, list) else v for k, v in node["inputs"].items()}
        return json.dumps([node["class_type"], inputs], sort_keys=True)

    def cached(self, prompt: dict[str, Any], node_id: str) -> bool:
        return prompt[node_id]["class_type"] in _LOADERS and self.signature(prompt, node_id) in self._cache

    def remember(self, prompt: dict[str, Any], node_id: str) -> None:
        if prompt[node_id]["class_type"] in _LOADERS:
            self._cache.add(self.signature(prompt, node_id))


class Execution:
    """One prompt's run: the message sequence, the node stand-ins, the history entry."""

    def __init__(self, server: ComfyUIServer, item: QueueItem) -> None:
        self.server, self.item = server, item
        self.prompt, self.sid = item.prompt, item.client_id
        self.messages: list[list[Any]] = []
        self.values: dict[str, Any] = {}  # node id -> what it "returned"
        self.ui: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.current = ""  # the node running now

    def run(self) -> None:
        pid = self.item.prompt_id
        self.add_message("execution_start", {"prompt_id": pid})
        order = self._order()
        cached = [node_id for node_id in order if self.server.cached(self.prompt, node_id)]
        self.add_message("execution_cached", {"nodes": cached, "prompt_id": pid})
        self.values.update(dict.fromkeys(cached, (None,) * 3))  # the loaders' outputs, kept from an earlier run
        try:
            for node_id in order:
                if node_id not in cached:
                    self._execute(node_id)
            self.add_message("execution_success", {"prompt_id": pid})
            status = ("success", True)
        except Interrupted:
            node_id = self.current
            self.add_message(
                "execution_interrupted",
                {"prompt_id": pid, "node_id": node_id, "node_type": self._class(node_id), "executed": list(self.executed)},
                broadcast=True,
            )
            status = ("error", False)
        except NodeFailure as failure:
            node_id = self.current
            self.add_message(
                "execution_error",
                {
                    "prompt_id": pid,
                    "node_id": node_id,
                    "node_type": self._class(node_id),
                    "executed": list(self.executed),
                    "exception_message": failure.message,
                    "exception_type": failure.exception_type,
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": [],
                },
            )
            status = ("error", False)
        self.server.history[pid] = {
            "prompt": [self.item.number, pid, self.prompt, {"client_id": self.sid}, self.item.outputs],
            "outputs": self.ui,
            "status": {"status_str": status[0], "completed": status[1], "messages": self.messages},
            "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in self.ui},
        }
        self.server.send("executing", {"node": None, "prompt_id": pid}, self.sid)

    def add_message(self, event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.messages.append([event, data])
        self.server.send(event, data, None if broadcast else self.sid)

    def _order(self) -> list[str]:
        """Dependencies first, from the output nodes, as ExecutionList stages them."""
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in self.prompt[node_id]["inputs"].values():
                if isinstance(value, list):
                    visit(value[0])
            order.append(node_id)

        for output in self.item.outputs:
            visit(output)
        return order

    def _class(self, node_id: str) -> str:
        return self.prompt[node_id]["class_type"]

    def _input(self, node_id: str, name: str) -> Any:
        value = self.prompt[node_id]["inputs"].get(name)
        return self.values[value[0]][value[1]] if isinstance(value, list) else value

    def _execute(self, node_id: str) -> None:
        self.current = node_id
        self.server.check_interrupt()  # nodes.before_node_execution
        self.server.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.item.prompt_id}, self.sid)
        handler = getattr(self, "_" + self._class(node_id).lower(), None)
        try:
            self.values[node_id] = handler(node_id) if handler else (None,) * 3
        except (Interrupted, NodeFailure):
            raise
        except Exception as exc:  # what ComfyUI reports for any exception in a node
            raise NodeFailure(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)) from exc
        self.executed.append(node_id)
        self.server.remember(self.prompt, node_id)
        if node_id in self.ui:
            self.server.send(
                "executed",
                {"node": node_id, "display_node": node_id, "output": self.ui[node_id], "prompt_id": self.item.prompt_id},
                self.sid,
            )

    def progress(self, node_id: str, value: int, maximum: int) -> None:
        """comfy.utils.ProgressBar through main.hijack_progress: checks for an interrupt, then reports."""
        self.server.check_interrupt()
        self.server.send("progress", {"value": value, "max": maximum, "prompt_id": self.item.prompt_id, "node": node_id}, self.sid)

    # -- node stand-ins ---------------------------------------------------------------------------

    def _loadimage(self, node_id: str) -> tuple:
        from PIL import Image

        with Image.open(self.server.input_dir / self._input(node_id, "image")) as image:
            image.load()
            return (image.convert("RGB"), None)

    def _loadaudio(self, node_id: str) -> tuple:
        audio, rate = decode_audio(self.server.input_dir / self._input(node_id, "audio"))
        return ({"waveform": audio, "sample_rate": rate},)

    def _sonic_predata(self, node_id: str) -> tuple:
        audio, image = self._input(node_id, "audio"), self._input(node_id, "image")
        # infer_duration = min(duration, the audio's own); image_audio_to_tensor reads
        # that much at 16 kHz and counts one frame per 640 samples (whisper features).
        duration = min(float(self._input(node_id, "duration")), audio["waveform"].size / audio["sample_rate"])
        audio_frames = int(duration * 16000) // 640
        # The whole picture is animated (the node's face crop goes unused), its short
        # side scaled to min_resolution and both sides rounded to multiples of 64.
        scale = int(self._input(node_id, "min_resolution")) / min(image.size)
        width, height = (round(side * scale / 64) * 64 for side in image.size)
        return ({"generated": audio_frames // 2, "width": width, "height": height, "image": image},)  # step = 2

    def _sonicsampler(self, node_id: str) -> tuple:
        data, fps = self._input(node_id, "data_dict"), float(self._input(node_id, "fps"))
        if self.server.oom_above is not None and min(data["width"], data["height"]) > self.server.oom_above:
            raise NodeFailure("torch.OutOfMemoryError", OOM_MESSAGE)
        steps = int(self._input(node_id, "inference_steps"))
        for step in range(1, steps + 1):
            time.sleep(self.server.step_delay_s)
            self.server.check_interrupt()
            if self.server.sampler_progress:
                self.progress(node_id, step, steps)
            if step % 5 == 0:
                self.server.send_preview(self.sid)
            if step == self.server.drop_ws_at_step:
                self.server.drop_sockets()
        # RIFE puts a frame between every two generated ones (use_interframe).
        loader = self.prompt[self.prompt[node_id]["inputs"]["model"][0]]["inputs"]
        frames = 2 * data["generated"] - 1 if loader.get("use_interframe") else data["generated"]
        return ({**data, "frames": max(1, frames)}, fps)  # the fps output is the input, as in SONICSampler

    def _vhs_videocombine(self, node_id: str) -> tuple:
        images, fps = self._input(node_id, "images"), float(self._input(node_id, "frame_rate"))
        audio = self._input(node_id, "audio")
        prefix = str(self._input(node_id, "filename_prefix"))
        subfolder, _, name = prefix.rpartition("/")
        folder = self.server.output_dir / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        counter = 1 + len(list(folder.glob(f"{name}_*-audio.mp4")))
        filename = f"{name}_{counter:05}-audio.mp4"
        rate = audio["sample_rate"]
        # VHS muxes with apad=whole_dur=video+1 s and -shortest: the audio ends with the video.
        length = round(images["frames"] / fps * rate)
        sound = np.pad(audio["waveform"], (0, max(0, length - audio["waveform"].size)))[:length]
        encode_video(
            folder / filename,
            self._frames(node_id, images),
            fps=round(fps),
            width=images["width"],
            height=images["height"],
            audio=sound,
            audio_rate=rate,
        )
        self.ui[node_id] = {
            "gifs": [
                {
                    "filename": filename,
                    "subfolder": subfolder,
                    "type": "output",
                    "format": str(self._input(node_id, "format")),
                    "frame_rate": fps,
                    "workflow": filename.replace("-audio.mp4", ".png"),
                    "fullpath": str(folder / filename),
                }
            ]
        }
        return ((True, [str(folder / filename)]),)

    def _frames(self, node_id: str, images: dict[str, Any]) -> Iterator[np.ndarray]:
        """The picture at the output size with a moving bar (frames differ, like a real video)."""
        from PIL import Image

        width, height, count = images["width"], images["height"], images["frames"]
        base = np.asarray(images["image"].resize((width, height), Image.BILINEAR))
        for index in range(count):
            frame = base.copy()
            top = (index * 7) % max(1, height - height // 8)
            frame[top : top + height // 16, width // 4 : 3 * width // 4] = 255
            self.progress(node_id, index + 1, count)
            yield frame


def encode_video(
    path: Path, frames: Iterator[np.ndarray], *, fps: int, width: int, height: int, audio: np.ndarray, audio_rate: int
) -> None:
    """H.264 + AAC: ``write_mp4`` for the square videos it makes; PyAV directly
    for another shape (a picture the adapter failed to crop square)."""
    import av

    if width == height:
        write_mp4(path, frames, fps=fps, size=width, audio=audio, audio_rate=audio_rate)
        return
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=audio_rate, layout="mono")
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1)[np.newaxis, :].astype(np.float32), format="flt", layout="mono")
        samples.sample_rate = audio_rate
        resampler = av.AudioResampler(format=sound.codec_context.format, layout="mono", rate=audio_rate)
        for converted in resampler.resample(samples) + resampler.resample(None):
            container.mux(sound.encode(converted))
        container.mux(sound.encode(None))


class ComfyUIStub:
    """The server on a free port, served by uvicorn in a background thread."""

    def __init__(self, **knobs: Any) -> None:
        import uvicorn

        from tests.support.guards import server_starting

        server_starting("a fake ComfyUI server")
        self.server = ComfyUIServer(**knobs)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.server,
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            ws_max_size=64 * 1024 * 1024,
            timeout_graceful_shutdown=1,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)

    def __enter__(self) -> ComfyUIServer:
        self.server.start()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the ComfyUI stub did not start")
            time.sleep(0.01)
        self.server.url = self.url
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
