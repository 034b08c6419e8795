"""OpenAI-compatible speech: ``POST /v1/audio/speech`` and ``GET /v1/models``.

OpenAI's clients (the ``openai`` packages, Open WebUI, LibreChat, Home
Assistant...) speak to Mynah with no code written for it. A speech request
is an ordinary speech job: the same bearer keys, rate limits, quotas, audit,
dedup and fair share, submitted through ``services.job_submit_tts`` and made
by the workers (the web process imports no engine). The view submits in its
pool thread and hands the response to the event loop (core.handoff), which
relays the job's audio as it comes, over a chunked body, holding no thread.

Mapping (README, "OpenAI clients"):
- ``model``: ``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts`` (and its dated
  name) map to engines by ``OPENAI_SPEECH_MODELS``; our engine names are
  accepted as they are. Unknown: 404 ``model_not_found``.
- ``voice``: an OpenAI voice name is the engine's own built-in voice; a
  Mynah voice id (a ready voice of the tenant, also as ``{"id": ...}``)
  speaks in that voice.
- ``response_format``: mp3 (default), opus (Ogg Opus: our ``ogg``), aac,
  flac, wav, pcm (s16le mono 24 kHz).
- ``speed`` (OpenAI's 0.25-4.0) and ``instructions`` go to the engine, which
  refuses what it cannot honour (422 ``unsupported_option``); a speed outside
  what our engines make (0.5-2.0) is refused (400 ``unsupported_speed``).
- ``stream_format``: ``audio`` (default) or ``sse`` (``speech.audio.delta``
  and ``speech.audio.done`` events), which OpenAI refuses for ``tts-1`` and
  ``tts-1-hd``, and so does this.

Errors keep the API's shape and stable ``code`` and add what OpenAI's clients
read (``type``, ``param``) to the same ``error`` object, so a client raises
its own exception classes (BadRequestError, AuthenticationError, ...).
Response headers: ``X-Mynah-Job-Id`` and ``X-Mynah-Cache-Hit``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.context import client_ip
from core.errors import ApplicationError
from core.exception_handler import api_exception_handler
from core.fields import StrictCharField, StrictFloatField, StrictSerializer
from core.handoff import Held, Receive, Send, disconnected, handoff_defer, response_headers, send_whole
from engines import registry
from engines.audio.io import FORMATS
from engines.errors import UnknownEngine
from jobs import services
from jobs.audio_stream import AudioStreamError, job_audio_chunks
from jobs.models import Job
from tenants.authentication import ApiRequest
from tenants.limits import tenant_limits
from voices.selectors import voice_get

logger = logging.getLogger(__name__)

# OpenAI's built-in voices: each is the engine's own voice (README).
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse")
# OpenAI's response formats -> ours.
RESPONSE_FORMATS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}
# OpenAI's models that cannot stream SSE (OpenAI refuses it for them).
_NO_SSE_MODELS = frozenset({"tts-1", "tts-1-hd"})
# What our engines make; OpenAI's range is wider (0.25-4.0).
_SPEED_RANGE = (0.5, 2.0)
_READ_CHUNK_BYTES = 64 * 1024

# OpenAI's error ``type`` by status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


# ------------------------------------------------------------------ errors


def openai_error(error: dict[str, Any], status: int) -> dict[str, Any]:
    """Our error object with OpenAI's ``type`` and ``param`` added (the first
    field a validation error names; else null)."""
    fields = error.get("details", {}).get("fields") if isinstance(error.get("details"), dict) else None
    param = next(iter(fields), None) if isinstance(fields, dict) else None
    return {**error, "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"), "param": param}


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = api_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and isinstance(response.data.get("error"), dict):
        response.data = {"error": openai_error(response.data["error"], response.status_code)}
    return response


class _OpenAIView(APIView):
    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return openai_exception_handler

    def perform_content_negotiation(self, request: Any, force: bool = False) -> tuple[Any, str]:
        # OpenAI's clients accept application/octet-stream for speech: the
        # audio bypasses DRF's renderers, and what they render (errors) is JSON.
        return JSONRenderer(), JSONRenderer.media_type


class SpeechFailed(Exception):
    """The job ended without audio (or not in time): the answer's status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ----------------------------------------------------------------- mapping


def openai_models() -> dict[str, str]:
    """OpenAI model names -> our engines (``OPENAI_SPEECH_MODELS``)."""
    return dict(settings.OPENAI_SPEECH_MODELS)


def _engine_usable(engine: str) -> bool:
    try:
        return not registry.engine_class(engine, kind=registry.TTS).configuration_problem()
    except UnknownEngine:
        return False


def speech_engine_for(model: str) -> str:
    """The engine a ``model`` names, or 404 ``model_not_found``."""
    engine = openai_models().get(model, model)
    if engine in registry.engine_names(registry.TTS):
        return engine
    raise ApplicationError(
        "model_not_found",
        f"The model '{model}' does not exist. GET /v1/models lists the models.",
        status=404,
        details={"fields": {"model": [{"message": "Unknown model.", "code": "model_not_found"}]}},
    )


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}]})
class _VoiceField(serializers.Field):
    """OpenAI's voice: a name, or ``{"id": ...}``; here also a Mynah voice id."""

    default_error_messages = {"invalid": "A voice name (alloy, ash, ...) or a voice id (also as an object with 'id')."}

    def to_internal_value(self, data: Any) -> str | uuid.UUID:
        if isinstance(data, dict) and set(data) == {"id"}:
            data = data["id"]
        if not isinstance(data, str) or not data:
            self.fail("invalid")
        if data.lower() in OPENAI_VOICES:
            return data.lower()
        try:
            return uuid.UUID(data)
        except ValueError:
            self.fail("invalid")
        raise AssertionError  # unreachable: fail() raises

    def to_representation(self, value: Any) -> str:
        return str(value)


# ------------------------------------------------------------------- views


class SpeechApi(_OpenAIView):
    """Text to speech, as OpenAI's ``POST /v1/audio/speech``: the body is the
    audio, streamed as the job makes it."""

    parser_classes = [JSONParser]

    @extend_schema_serializer(component_name="OpenAISpeechCreate")
    class InputSerializer(StrictSerializer):
        model = StrictCharField(max_length=64, help_text="tts-1, tts-1-hd, gpt-4o-mini-tts, or an engine name (GET /v1/models)")
        input = StrictCharField(max_length=settings.TTS_MAX_TEXT_CHARS)
        voice = _VoiceField(help_text="An OpenAI voice name (the engine's own voice) or the id of one of the tenant's ready voices")
        response_format = serializers.ChoiceField(choices=sorted(RESPONSE_FORMATS), default="mp3")
        speed = StrictFloatField(required=False, default=1.0, min_value=0.25, max_value=4.0)
        instructions = StrictCharField(required=False, max_length=500, help_text="Engines with the 'instruct' option only")
        stream_format = serializers.ChoiceField(choices=["audio", "sse"], default="audio")

    @extend_schema(
        operation_id="openai_audio_speech",
        request=InputSerializer,
        responses={
            (200, "audio/mpeg"): OpenApiResponse(OpenApiTypes.BINARY, "The audio (chunked), or SSE with stream_format=sse"),
        },
    )
    def post(self, request: ApiRequest) -> Response | HttpResponse:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        model, sse = values["model"], values["stream_format"] == "sse"
        engine = speech_engine_for(model)
        if sse and model in _NO_SSE_MODELS:
            raise ApplicationError(
                "unsupported_stream_format",
                f"stream_format 'sse' is not supported for model '{model}'.",
                details={"fields": {"stream_format": [{"message": "Not for this model.", "code": "unsupported"}]}},
            )
        speed = values["speed"]
        if not _SPEED_RANGE[0] <= speed <= _SPEED_RANGE[1]:
            raise ApplicationError(
                "unsupported_speed",
                f"Speed {speed} cannot be honoured: our engines speak from {_SPEED_RANGE[0]} to {_SPEED_RANGE[1]} times normal.",
                details={"fields": {"speed": [{"message": "Out of the engines' range.", "code": "unsupported"}]}},
            )
        client = request.user
        voice = values["voice"]
        params = services.tts_params_resolve(
            text=values["input"],
            language=None,
            engine=engine,
            format=RESPONSE_FORMATS[values["response_format"]],
            speed=speed,
            voice=voice_get(tenant=client.tenant, voice_id=str(voice)) if isinstance(voice, uuid.UUID) else None,
            instruct=values.get("instructions", ""),
        )
        job = services.job_submit_tts(
            tenant=client.tenant,
            api_key=client.api_key,
            params=params,
            metadata={},
            actor=client.actor,
            ip=client_ip(request),
            # Someone is listening for it now: high priority where the tenant may use it.
            priority=Job.Priority.HIGH if tenant_limits(client.tenant).allow_high_priority else Job.Priority.NORMAL,
            stream=True,  # the worker publishes the audio as it is made: relayed below
        )
        headers = {"X-Mynah-Job-Id": str(job.id), "X-Mynah-Cache-Hit": "true" if job.cache_hit else "false"}
        content_type = "text/event-stream" if sse else FORMATS[params.format].content_type
        relay = functools.partial(_relay, job_id=job.id, tenant_id=client.tenant.pk, content_type=content_type, sse=sse)
        if handoff_defer(relay):
            return Response({}, headers=headers)  # held: the relay answers on the event loop
        return _answer_in_thread(job_id=job.id, tenant_id=client.tenant.pk, content_type=content_type, sse=sse, headers=headers)


class ModelListApi(_OpenAIView):
    """The speech models this deployment can run, in OpenAI's list shape:
    OpenAI's names (mapped to engines) and our engine names."""

    @extend_schema(operation_id="openai_models_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: ApiRequest) -> Response:
        entries = [(model, engine) for model, engine in openai_models().items() if _engine_usable(engine)]
        entries += [(engine, engine) for engine in registry.engine_names(registry.TTS) if _engine_usable(engine)]
        data = [{"id": model, "object": "model", "created": 0, "owned_by": "mynah", "engine": engine} for model, engine in entries]
        return Response({"object": "list", "data": data})


# ----------------------------------------------------------- audio source


# How a stream that ended without the audio is answered, before its first byte.
_STREAM_ERROR_STATUS = {"job_failed": 500, "job_canceled": 409, "result_expired": 410, "stream_interrupted": 502}


async def speech_audio(*, job_id: Any, tenant_id: Any) -> AsyncGenerator[bytes, None]:
    """The job's encoded audio from its first byte to its last, as the worker
    makes it (jobs.audio_stream). Raises SpeechFailed if it ends without audio."""
    chunks = job_audio_chunks(job_id=job_id, tenant_id=tenant_id)
    try:
        async for chunk in chunks:
            yield chunk
    except AudioStreamError as exc:
        raise SpeechFailed(_STREAM_ERROR_STATUS.get(exc.code, 503), exc.code, exc.message) from exc
    finally:
        await chunks.aclose()  # a client that left: the relay learns it now (the job goes on)


def _sse_event(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _body(*, job_id: Any, tenant_id: Any, sse: bool) -> AsyncGenerator[bytes, None]:
    """The response body: the audio, or OpenAI's speech SSE events around it."""
    async for chunk in speech_audio(job_id=job_id, tenant_id=tenant_id):
        yield _sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}) if sse else chunk
    if sse:  # Mynah counts seconds, not tokens: the usage OpenAI's clients expect, as zeros
        yield _sse_event({"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}})


def _error_json(failure: SpeechFailed, request_id: str) -> bytes:
    error = {"code": failure.code, "message": failure.message, "details": {}, "request_id": request_id}
    return json.dumps({"error": openai_error(error, failure.status)}).encode()


async def _relay(held: Held, receive: Receive, send: Send, *, job_id: Any, tenant_id: Any, content_type: str, sse: bool) -> None:
    """Event loop: the status waits for the first byte (an error before it is
    an ordinary JSON error); then the audio goes out chunk by chunk."""
    if held.status != 200:
        await send_whole(send, held.status, held.headers, held.body)
        return
    body = _body(job_id=job_id, tenant_id=tenant_id, sse=sse)
    gone = asyncio.ensure_future(disconnected(receive))
    try:
        first = asyncio.ensure_future(anext(body, b""))
        await asyncio.wait({first, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not first.done():  # the client hung up first: the job goes on without it
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            return
        try:
            chunk = first.result()
        except SpeechFailed as failure:
            request_id = (held.header(b"x-request-id") or b"").decode("latin-1")
            headers = response_headers(held, drop=(b"content-type",), add=[(b"content-type", b"application/json")])
            await send_whole(send, failure.status, headers, _error_json(failure, request_id))
            return
        headers = response_headers(held, drop=(b"content-type",), add=[(b"content-type", content_type.encode())])
        if sse:
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while chunk and not gone.done():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            try:
                chunk = await anext(body, b"")
            except SpeechFailed as failure:  # after the status: cut off, so no client takes it for the file
                logger.info("speech ended without all its audio", extra={"job_id": str(job_id), "error_code": failure.code})
                raise
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        await body.aclose()


def _answer_in_thread(*, job_id: Any, tenant_id: Any, content_type: str, sse: bool, headers: dict[str, str]) -> HttpResponse:
    """Plain WSGI (the test client, a WSGI deployment): no event loop to hand
    the wait to, so this thread waits and answers with the whole body."""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in _body(job_id=job_id, tenant_id=tenant_id, sse=sse)])

    try:
        content = async_to_sync(collect)()
    except SpeechFailed as failure:
        raise ApplicationError(failure.code, failure.message, status=failure.status) from None
    response = HttpResponse(content, content_type=content_type)
    for name, value in headers.items():
        response[name] = value
    return response
