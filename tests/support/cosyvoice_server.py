"""A stand-in for CosyVoice's FastAPI runtime server (runtime/python/fastapi/
server.py), speaking its protocol: multipart form POSTs to /inference_*,
a chunked stream of raw int16 PCM at 24 kHz back, 422 for a missing form field,
500 for an unreadable prompt. It has no model: it "clones" by replaying the
prompt audio (resampled) for as long as the text would take to say.

Run in a thread (``CosyVoiceStub``) or as a process (``python -m
tests.support.cosyvoice_server --port N --log FILE``) so tests can kill it.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import io
import json
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24000
ENDPOINT_FIELDS = {
    "/inference_zero_shot": ("tts_text", "prompt_text", "prompt_wav"),
    "/inference_cross_lingual": ("tts_text", "prompt_wav"),
    "/inference_instruct2": ("tts_text", "instruct_text", "prompt_wav"),
}
MARKED_FIELD = {"/inference_zero_shot": "prompt_text", "/inference_cross_lingual": "tts_text", "/inference_instruct2": "instruct_text"}
END_OF_PROMPT = "<|endofprompt|>"


def parse_form(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data -> {name: (filename, bytes)}."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def read_prompt(data: bytes) -> np.ndarray:
    """Like the real server: a WAV of at least 16 kHz, else it fails (500)."""
    with wave.open(io.BytesIO(data)) as wav:
        if wav.getframerate() < 16000 or wav.getsampwidth() != 2:
            raise ValueError("prompt must be 16-bit PCM at >= 16 kHz")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    mono = pcm.reshape(-1, channels).mean(axis=1)
    positions = np.arange(0, mono.size, rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(mono.size), mono).astype(np.float32)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CosyVoiceServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # FastAPI's /docs: the only GET a health check can use
        body = b"<html>docs</html>"
        self.send_response(200 if self.path == "/docs" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        fields = parse_form(self.headers.get("Content-Type", ""), body)
        expected = ENDPOINT_FIELDS.get(self.path)
        if expected is None:
            return self._json(404, {"detail": "Not Found"})
        missing = [name for name in expected if name not in fields]
        if missing:
            return self._json(422, {"detail": [{"type": "missing", "loc": ["body", name], "msg": "Field required"} for name in missing]})
        texts = {name: fields[name][1].decode() for name in expected if name != "prompt_wav"}
        self.server.record(
            {
                "path": self.path,
                **texts,
                "prompt_wav_bytes": len(fields["prompt_wav"][1]),
                "prompt_wav_format": _wav_format(fields["prompt_wav"][1]),
            }
        )
        try:
            prompt = read_prompt(fields["prompt_wav"][1])
        except (wave.Error, ValueError, EOFError):
            return self._plain(500, b"Internal Server Error")
        # CosyVoice3 asserts the marker inside the generator: after the 200.
        marked = END_OF_PROMPT in texts[MARKED_FIELD[self.path]]
        spoken = texts["tts_text"].split(END_OF_PROMPT)[-1]
        audio = _replayed(prompt, seconds=max(0.5, 0.07 * len(spoken))) if marked else np.zeros(0, np.float32)
        self._stream_pcm(audio)

    def _stream_pcm(self, audio: np.ndarray) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pcm = (np.clip(audio, -1, 0.99997) * 32768).astype("<i2").tobytes()
        step = max(2, (len(pcm) // 3) // 2 * 2)  # a few chunks, like per-sentence output
        for start in range(0, len(pcm), step):
            time.sleep(self.server.chunk_delay_s)  # generation time: a kill can land mid-stream
            piece = pcm[start : start + step]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, status: int, payload: object) -> None:
        self._plain(status, json.dumps(payload).encode(), "application/json")

    def _plain(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _wav_format(data: bytes) -> list[int] | None:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            return [wav.getframerate(), wav.getnchannels(), wav.getsampwidth()]
    except (wave.Error, EOFError):
        return None


def _replayed(prompt: np.ndarray, *, seconds: float) -> np.ndarray:
    count = int(seconds * SAMPLE_RATE)
    return np.resize(prompt, count) if prompt.size else np.zeros(count, np.float32)


class CosyVoiceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, log_path: Path | None = None, chunk_delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[dict] = []
        self.log_path = log_path
        self._lock = threading.Lock()

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.log_path:
                with self.log_path.open("a") as log:
                    log.write(json.dumps(entry) + "\n")


class CosyVoiceStub:
    """The server in a background thread, for in-process tests."""

    def __init__(self) -> None:
        from tests.support.guards import server_starting

        server_starting("a fake CosyVoice server")
        self.server = CosyVoiceServer()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CosyVoiceStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def requests(self) -> list[dict]:
        return self.server.requests


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    CosyVoiceServer(args.port, args.log, args.chunk_delay).serve_forever()
