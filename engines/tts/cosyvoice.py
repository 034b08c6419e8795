"""CosyVoice3 through its FastAPI runtime (runtime/python/fastapi/server.py in
FunAudioLLM/CosyVoice): zero-shot cloning from a prompt clip and its
transcript, cross-lingual cloning, and instructions (instruct2).

The protocol, as that server implements it:
- POST multipart form to ``/inference_zero_shot`` (tts_text, prompt_text,
  prompt_wav), ``/inference_cross_lingual`` (tts_text, prompt_wav) or
  ``/inference_instruct2`` (tts_text, instruct_text, prompt_wav).
- prompt_wav is an audio file the server reads at 16 kHz (sources under
  16 kHz are refused, prompts over 30 s assert); we send our 16 kHz mono WAV.
- The answer is a chunked stream of raw little-endian int16 mono PCM, no
  header, at the model's rate (24 kHz for CosyVoice2/3; the server never says).
- CosyVoice3 requires the ``<|endofprompt|>`` marker: after a system line in
  prompt_text (zero-shot), in front of tts_text (cross-lingual), at the end of
  instruct_text (instruct2). CosyVoice2 has no marker (COSYVOICE_PROMPT_STYLE).
- The server has no speed parameter, so ``speed`` is not an option here.
- Errors: 422 JSON for a bad form, 500 for a failure before streaming; a
  failure while generating ends the stream early (the body may be empty).

Configuration comes from the environment (engines never import Django):
COSYVOICE_URLS (comma-separated base URLs: several instances, or one Traefik
URL), COSYVOICE_SAMPLE_RATE, COSYVOICE_PROMPT_STYLE, COSYVOICE_CONNECT_TIMEOUT_S,
COSYVOICE_READ_TIMEOUT_S, COSYVOICE_ATTEMPTS.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from engines.errors import PermanentEngineError, TransientEngineError
from engines.tts.base import SpeechRequest, TTSEngine

SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"
_MARKUP = re.compile(r"<\|.*?\|>")  # model control tokens: never from users
MAX_AUDIO_S = 600  # per chunk; guards memory against a runaway stream


@dataclass(frozen=True)
class CosyVoiceConfig:
    urls: tuple[str, ...]
    sample_rate: int = 24000
    prompt_style: str = "cosyvoice3"
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 120.0
    attempts: int = 3

    @classmethod
    def from_env(cls) -> CosyVoiceConfig:
        urls = tuple(u.strip().rstrip("/") for u in os.environ.get("COSYVOICE_URLS", "").split(",") if u.strip())
        return cls(
            urls=urls,
            sample_rate=int(os.environ.get("COSYVOICE_SAMPLE_RATE", "24000")),
            prompt_style=os.environ.get("COSYVOICE_PROMPT_STYLE", "cosyvoice3"),
            connect_timeout_s=float(os.environ.get("COSYVOICE_CONNECT_TIMEOUT_S", "3")),
            read_timeout_s=float(os.environ.get("COSYVOICE_READ_TIMEOUT_S", "120")),
            attempts=int(os.environ.get("COSYVOICE_ATTEMPTS", "3")),
        )


def _clean(text: str) -> str:
    return _MARKUP.sub("", text).strip()


def _primary(language: str) -> str:
    return language.lower().split("-")[0].replace("cmn", "zh").replace("yue", "zh")


def inference_call(request: SpeechRequest, text: str, *, prompt_style: str) -> tuple[str, dict[str, str]]:
    """The endpoint and the text fields for one chunk (the prompt file is added by the caller)."""
    voice = request.voice
    assert voice is not None  # requires_voice: checked at submit
    marked = prompt_style == "cosyvoice3"
    text = _clean(text)
    if request.instruct:
        instruct = _clean(request.instruct)
        instruct_text = f"{SYSTEM_PROMPT} {instruct}{END_OF_PROMPT}" if marked else instruct
        return "/inference_instruct2", {"tts_text": text, "instruct_text": instruct_text}
    transcript = _clean(voice.transcript)
    if transcript and _primary(voice.language or request.language) == _primary(request.language):
        prompt_text = f"{SYSTEM_PROMPT}{END_OF_PROMPT}{transcript}" if marked else transcript
        return "/inference_zero_shot", {"tts_text": text, "prompt_text": prompt_text}
    # No transcript, or another language than the prompt's: cross-lingual.
    tts_text = f"{SYSTEM_PROMPT}{END_OF_PROMPT}{text}" if marked else text
    return "/inference_cross_lingual", {"tts_text": tts_text}


class CosyVoiceEngine(TTSEngine):
    name = "cosyvoice"
    sample_rate = 24000
    max_chunk_chars = 200
    options = frozenset({"voice", "instruct"})
    clones_voice = True
    requires_voice = True
    _LANGUAGES: ClassVar[frozenset[str]] = frozenset({"zh", "cmn", "yue", "en", "en-us", "en-gb", "ja", "ko", "de", "es", "fr", "it", "ru"})

    def __init__(self, config: CosyVoiceConfig | None = None) -> None:
        super().__init__()
        self.config = config or CosyVoiceConfig.from_env()
        self._next_url = itertools.cycle(self.config.urls or ("",))
        self._url_lock = threading.Lock()
        self._http: Any = None

    @classmethod
    def languages(cls) -> frozenset[str]:
        return cls._LANGUAGES

    @classmethod
    def configuration_problem(cls) -> str | None:
        return None if CosyVoiceConfig.from_env().urls else "COSYVOICE_URLS is not set: no CosyVoice server is configured."

    def _load(self) -> None:
        import urllib3

        if not self.config.urls:
            raise PermanentEngineError("No CosyVoice server is configured (COSYVOICE_URLS).", code="engine_not_configured")
        # TTSEngine declares sample_rate a ClassVar; this adapter's rate is the server's, per instance.
        self.sample_rate = self.config.sample_rate  # type: ignore[misc]
        self._http = urllib3.PoolManager(num_pools=8, maxsize=8, retries=False)

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        if request.voice is None:
            raise PermanentEngineError("CosyVoice needs a voice prompt (voice_id).", code="voice_required")
        path, text_fields = inference_call(request, text, prompt_style=self.config.prompt_style)
        prompt = request.voice.audio_path.read_bytes()
        fields: dict[str, Any] = {**text_fields, "prompt_wav": ("prompt_wav.wav", prompt, "audio/wav")}
        failures = []
        for _ in range(max(1, self.config.attempts)):
            url = self._pick_url() + path
            try:
                return self._post(url, fields)
            except TransientEngineError as exc:  # connection refused, timeout, 5xx, cut stream: next instance
                failures.append(f"{url}: {exc.message}")
        raise TransientEngineError("CosyVoice failed: " + "; ".join(failures[-3:]))

    def _pick_url(self) -> str:
        with self._url_lock:
            return next(self._next_url)

    def _post(self, url: str, fields: dict[str, Any]) -> np.ndarray:
        import urllib3

        timeout = urllib3.Timeout(connect=self.config.connect_timeout_s, read=self.config.read_timeout_s)
        try:
            response = self._http.request("POST", url, fields=fields, timeout=timeout, preload_content=False, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientEngineError(f"cannot reach the server ({type(exc).__name__})") from None
        try:
            if response.status >= 400:
                excerpt = response.read(500).decode("utf-8", "replace")
                if response.status < 500 and response.status not in (408, 429):
                    raise PermanentEngineError(f"CosyVoice refused the request ({response.status}): {excerpt}")
                raise TransientEngineError(f"server error {response.status}")
            pcm = self._read_pcm(response)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientEngineError(f"the audio stream broke off ({type(exc).__name__})") from None
        finally:
            response.release_conn()
        if pcm.size == 0:
            # The server reports generation errors by ending the stream early.
            raise TransientEngineError("the server returned no audio")
        return pcm.astype(np.float32) / 32768.0

    def _read_pcm(self, response: Any) -> np.ndarray:
        limit = MAX_AUDIO_S * self.sample_rate * 2
        body = bytearray()
        for piece in response.stream(64 * 1024):
            body += piece
            if len(body) > limit:
                raise PermanentEngineError(f"CosyVoice returned more than {MAX_AUDIO_S} s of audio for one chunk.")
        usable = len(body) - len(body) % 2  # a cut stream may end mid-sample
        return np.frombuffer(bytes(body[:usable]), dtype="<i2")
