"""Thin views: validate with a serializer, call a service or selector,
return a representation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.context import client_ip
from core.errors import ApplicationError, NotFound
from core.fields import (
    MetadataField,
    StrictCharField,
    StrictFloatField,
    StrictSerializer,
)
from core.idempotency import idempotent
from core.pagination import PAGE_PARAMETERS, NewestFirstCursorPagination
from core.responses import ClosingStreamingHttpResponse
from core.schema import page_of
from core.storage import storage_is_local, stored_file_response
from engines.audio.io import FORMATS
from jobs import events, selectors, services
from jobs.audio_stream import AudioStreamError, job_audio_chunks
from jobs.models import Job
from jobs.representation import job_path, job_representation
from jobs.schemas import JobSerializer, UsageSerializer
from jobs.services.params import VOICE_MATCHING_MODES
from jobs.streams import job_event_stream
from jobs.wait import PREFER_WAIT_PARAMETER, prefer_wait
from tenants.authentication import ApiRequest
from voices.selectors import voice_get
from webhooks.services import EVENT_TYPES, job_webhook_check

logger = logging.getLogger(__name__)

# ``Prefer: wait=N`` answered with the finished job (jobs/wait.py).
FINISHED = {201: OpenApiResponse(JobSerializer, "Prefer: wait: the job finished within the wait")}


def _base_url(request: Request) -> str:
    return request.build_absolute_uri("/")


def _represent(job: Job, request: Request) -> dict[str, Any]:
    return job_representation(job, base_url=_base_url(request))


def _accepted(job: Job, request: Request) -> Response:
    """A submit's answer: 202 with the job and where to poll it."""
    return Response(_represent(job, request), status=status.HTTP_202_ACCEPTED, headers={"Location": job_path("jobs:detail", job.id)})


def _submit_replay(request: ApiRequest, job_id: UUID) -> Response | None:
    """An Idempotency-Key's job whose submit recorded no answer (its instance
    died after the commit): answered as the submit would, as it is now."""
    try:
        job = selectors.job_get(tenant=request.user.tenant, job_id=str(job_id))
    except NotFound:
        return None  # deleted since: the key runs again
    return _accepted(job, request)


def _voice_matching_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=VOICE_MATCHING_MODES,
        required=False,
        help_text=(
            "With voice_id and a built-in engine: 'auto' (default) moves the speech toward the voice when that raises "
            "similarity and keeps it intelligible; 'off' leaves the engine's own voice"
        ),
    )


class TtsCreateApi(APIView):
    @extend_schema_serializer(component_name="TtsCreate")
    class InputSerializer(StrictSerializer):
        text = StrictCharField(max_length=settings.TTS_MAX_TEXT_CHARS)
        language = StrictCharField(required=False, max_length=35)
        engine = StrictCharField(required=False, max_length=64)
        format = serializers.ChoiceField(choices=sorted(FORMATS), default="wav")
        speed = StrictFloatField(required=False, default=1.0, min_value=0.5, max_value=2.0)
        voice_id = serializers.UUIDField(required=False, help_text="One of the tenant's ready voices (POST /v1/voices)")
        voice_matching = _voice_matching_field()
        instruct = StrictCharField(
            required=False, max_length=500, help_text="Style instruction: emotion, speed, dialect (engines with the 'instruct' option)"
        )
        metadata = MetadataField(required=False, default=dict)
        priority = serializers.ChoiceField(choices=Job.Priority.choices, default=Job.Priority.NORMAL)
        cache = serializers.BooleanField(default=True, help_text="false: always run the engine, even for a repeated request")
        stream = serializers.BooleanField(
            default=False, help_text="true: the audio is published as it is made; read it from the job's audio_stream_url"
        )
        cancel_on_disconnect = serializers.BooleanField(
            default=False, help_text="With stream: a client that stops reading the audio stream before its end cancels the job"
        )
        webhook_url = StrictCharField(required=False, max_length=2000)
        webhook_events = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, allow_empty=False, max_length=len(EVENT_TYPES)
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs.get("cancel_on_disconnect") and not attrs.get("stream"):
                message = "Only with stream: it is the stream's client whose leaving cancels the job."
                raise serializers.ValidationError({"cancel_on_disconnect": [ErrorDetail(message, code="requires_stream")]})
            return _webhook_fields_check(attrs)

    @extend_schema(
        request=InputSerializer,
        parameters=[PREFER_WAIT_PARAMETER],
        responses={202: JobSerializer, 200: OpenApiResponse(JobSerializer, "Replayed for a repeated Idempotency-Key"), **FINISHED},
    )
    @prefer_wait
    @idempotent(replay=_submit_replay)
    def post(self, request: ApiRequest) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        params = services.tts_params_resolve(
            text=values["text"],
            language=values.get("language"),
            engine=values.get("engine"),
            format=values["format"],
            speed=values["speed"],
            voice=voice_get(tenant=request.user.tenant, voice_id=values["voice_id"]) if "voice_id" in values else None,
            instruct=values.get("instruct", ""),
            voice_matching=values.get("voice_matching"),
        )
        client = request.user
        job = services.job_submit_tts(
            webhook=_webhook(values),
            priority=values["priority"],
            use_cache=values["cache"],
            stream=values["stream"],
            cancel_on_disconnect=values["cancel_on_disconnect"],
            tenant=client.tenant,
            api_key=client.api_key,
            params=params,
            metadata=values["metadata"],
            actor=client.actor,
            ip=client_ip(request),
        )
        return _accepted(job, request)


_DEFAULTS = services.TALKING_HEAD_DEFAULTS


class TalkingHeadCreateApi(APIView):
    """A lip-synced MP4 from a portrait and speech: an uploaded audio file,
    or text that a speech stage of the same job synthesizes first."""

    parser_classes = [MultiPartParser]

    # ``duration`` is only there to be refused with a clear message: not in the schema.
    @extend_schema_serializer(component_name="TalkingHeadCreate", exclude_fields=["duration"])
    class InputSerializer(StrictSerializer):
        image = serializers.FileField(allow_empty_file=True, help_text="Portrait: JPEG, PNG or WebP; at most 10 MB, 4096 px a side")
        audio = serializers.FileField(required=False, allow_empty_file=True, help_text="Speech, at most 120 s, any common format")
        text = StrictCharField(required=False, max_length=settings.TTS_MAX_TEXT_CHARS, help_text="Instead of audio: spoken first")
        voice_id = serializers.UUIDField(required=False, help_text="With text: one of the tenant's ready voices")
        voice_matching = _voice_matching_field()
        language = StrictCharField(required=False, max_length=35, help_text="With text: its language")
        tts_engine = StrictCharField(required=False, max_length=64, help_text="With text: the speech engine (default by language)")
        engine = StrictCharField(required=False, max_length=64, help_text="Talking-head engine: builtin (CPU) or sonic (ComfyUI)")
        resolution = serializers.ChoiceField(
            choices=[512, 768, 1024], default=_DEFAULTS["resolution"], help_text="Output is resolution x resolution"
        )
        expand_ratio = serializers.FloatField(
            min_value=0.1, max_value=0.3, default=_DEFAULTS["expand_ratio"], help_text="Margin around the face in the crop"
        )
        inference_steps = serializers.IntegerField(min_value=10, max_value=30, default=_DEFAULTS["inference_steps"])
        dynamic_scale = serializers.FloatField(
            min_value=0.5, max_value=2.0, default=_DEFAULTS["dynamic_scale"], help_text="Strength of mouth and jaw motion"
        )
        motion_scale = serializers.FloatField(
            min_value=0.5, max_value=2.0, default=_DEFAULTS["motion_scale"], help_text="Strength of head motion"
        )
        fps = serializers.IntegerField(min_value=10, max_value=60, default=_DEFAULTS["fps"])
        temporal_smoothing = serializers.BooleanField(default=_DEFAULTS["temporal_smoothing"])
        lip_sync_correction = serializers.BooleanField(default=_DEFAULTS["lip_sync_correction"])
        duration = serializers.CharField(
            required=False, help_text="Not accepted: the duration is read from the audio (refused with a field error)"
        )
        metadata = MetadataField(required=False, default=dict, help_text="A JSON object (in a form: its JSON text), echoed on the job")
        priority = serializers.ChoiceField(choices=Job.Priority.choices, default=Job.Priority.NORMAL)
        cache = serializers.BooleanField(default=True, help_text="false: always render, even for a repeated request")
        webhook_url = StrictCharField(required=False, max_length=2000)
        webhook_events = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, allow_empty=False, max_length=len(EVENT_TYPES)
        )

        def validate_duration(self, value: str) -> str:
            # Sonic's workflow takes a duration; here it always comes from the
            # audio file. Refused rather than silently ignored.
            raise serializers.ValidationError("The duration is read from the audio; do not send it.", code="not_accepted")

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("audio" in attrs) == ("text" in attrs):
                raise serializers.ValidationError({"audio": ["Send either an audio file or text, not both."]})
            for name in ("voice_id", "voice_matching", "language", "tts_engine"):
                if name in attrs and "text" not in attrs:
                    raise serializers.ValidationError({name: ["Only with text (it sets up the speech stage)."]})
            return _webhook_fields_check(attrs)

    @extend_schema(
        operation_id="talking_head_create",
        request={"multipart/form-data": InputSerializer},
        parameters=[PREFER_WAIT_PARAMETER],
        responses={202: JobSerializer, 200: OpenApiResponse(JobSerializer, "Replayed for a repeated Idempotency-Key"), **FINISHED},
    )
    @prefer_wait
    @idempotent(replay=_submit_replay)
    def post(self, request: ApiRequest) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        client = request.user
        voice = voice_get(tenant=client.tenant, voice_id=values["voice_id"]) if "voice_id" in values else None
        params = services.talking_head_params_resolve(
            engine=values.get("engine"),
            options={name: values[name] for name in services.TALKING_HEAD_DEFAULTS},
            text=values.get("text"),
            language=values.get("language"),
            voice=voice,
            tts_engine=values.get("tts_engine"),
            voice_matching=values.get("voice_matching"),
        )
        job = services.job_submit_talking_head(
            tenant=client.tenant,
            api_key=client.api_key,
            params=params,
            image=values["image"],
            audio=values.get("audio"),
            metadata=values["metadata"],
            actor=client.actor,
            ip=client_ip(request),
            webhook=_webhook(values),
            priority=values["priority"],
            use_cache=values["cache"],
        )
        return _accepted(job, request)


def _webhook_fields_check(attrs: dict[str, Any]) -> dict[str, Any]:
    """``webhook_events`` choose what goes to ``webhook_url``: alone they would
    be silently ignored, so they are refused."""
    if "webhook_events" in attrs and not attrs.get("webhook_url"):
        message = "Only with webhook_url: these are the events sent there."
        raise serializers.ValidationError({"webhook_events": [ErrorDetail(message, code="requires_webhook_url")]})
    return attrs


def _webhook(values: dict[str, Any]) -> services.WebhookTarget:
    if not values.get("webhook_url"):
        return services.WebhookTarget()
    job_webhook_check(url=values["webhook_url"], event_types=values.get("webhook_events"))
    return services.WebhookTarget(url=values["webhook_url"], events=values.get("webhook_events"))


class JobListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
        kind = serializers.ChoiceField(choices=Job.Kind.choices, required=False)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses=page_of(JobSerializer, "JobPage"),
    )
    def get(self, request: ApiRequest) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(tenant=request.user.tenant, **filters.validated_data)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response([_represent(job, request) for job in page])


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request: ApiRequest, job_id: str) -> Response:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        return Response(_represent(job, request))


class JobResultApi(APIView):
    """The result file: streamed by Django for local storage, otherwise a
    redirect to the storage's (signed) URL."""

    @extend_schema(
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, "The file (local storage)"),
            302: OpenApiResponse(description="Redirect to a presigned URL (object storage)"),
        }
    )
    def get(self, request: ApiRequest, job_id: str) -> FileResponse | HttpResponseRedirect:
        job = _finished_job(request, job_id)
        return _file_response(job, key=job.result_key, content_type=job.result_content_type, url=job_representation(job)["result"]["url"])


class JobResultFileApi(APIView):
    """A further result file by role: ``audio`` is the speech a talking-head
    video made from text was rendered with."""

    @extend_schema(
        operation_id="jobs_result_file",
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, "The file (local storage)"),
            302: OpenApiResponse(description="Redirect to a presigned URL (object storage)"),
        },
    )
    def get(self, request: ApiRequest, job_id: str, role: str) -> FileResponse | HttpResponseRedirect:
        job = _finished_job(request, job_id)
        stored = job.result_files.get(role)
        if stored is None:
            raise ApplicationError(
                "result_not_found", f"The job has no '{role}' result file.", status=404, details={"files": sorted(job.result_files)}
            )
        url = job_representation(job)["result"][role]["url"]
        return _file_response(job, key=stored["key"], content_type=stored["content_type"], url=url)


def _finished_job(request: ApiRequest, job_id: str) -> Job:
    job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
    if job.status == Job.Status.EXPIRED or (job.result_expires_at and job.result_expires_at < timezone.now()):
        raise ApplicationError("result_expired", "The result has expired and was deleted.", status=410)
    if job.status != Job.Status.SUCCEEDED:
        raise ApplicationError(
            "result_not_ready",
            f"The job is {job.status}; a result exists once it succeeded.",
            status=409,
            details={"status": job.status},
        )
    return job


def _file_response(job: Job, *, key: str, content_type: str, url: str) -> FileResponse | HttpResponseRedirect:
    if not storage_is_local():
        return HttpResponseRedirect(url)
    filename = f"{job.id}{'.' + key.rsplit('.', 1)[-1] if '.' in key else ''}"
    try:
        return stored_file_response(key, content_type=content_type, filename=filename)
    except FileNotFoundError:
        raise ApplicationError("result_missing", "The result file is missing from storage.", status=410) from None


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobSerializer)
    @idempotent
    def post(self, request: ApiRequest, job_id: str) -> Response:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        job = services.job_cancel(job=job, actor=request.user.actor, ip=client_ip(request))
        return Response(_represent(job, request))


class EventStreamRenderer(BaseRenderer):
    """Lets clients send ``Accept: text/event-stream`` (EventSource does)."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)  # only errors are rendered: the stream itself is not


class JobEventsApi(APIView):
    """``text/event-stream`` of the job's events until it is terminal. The
    view itself only authenticates and checks ownership; the stream is an
    async iterator that the ASGI server drives without a thread."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]
    http_method_names = ["get", "options"]  # no HEAD: it would open a whole stream

    @extend_schema(
        parameters=[OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER), OpenApiParameter("last_event_id", str)],
        responses={(200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, "Server-Sent Events: status, progress, done")},
    )
    def get(self, request: ApiRequest, job_id: str) -> StreamingHttpResponse:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        last_event_id = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id") or ""
        if last_event_id and not events.is_event_id(last_event_id):
            field_error = [{"message": "Not an event id.", "code": "invalid"}]
            raise ApplicationError(
                "validation_error", "Last-Event-ID must be an id this stream sent.", details={"fields": {"Last-Event-ID": field_error}}
            )
        stream = job_event_stream(job_id=job.id, last_event_id=last_event_id, base_url=_base_url(request))
        response = ClosingStreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx/Traefik-style proxies: do not buffer
        return response


class JobAudioStreamApi(APIView):
    """A speech job's audio while it is made (chunked), or at once from
    storage when it has finished (a dedup hit included). The view only
    authenticates and checks the job; the relay (jobs/audio_stream.py) is an
    async iterator the ASGI server drives without a thread. A stream that
    ends without the job's audio (it failed mid-speech) is cut off: the
    chunked body never completes, so a client cannot take it for the file."""

    http_method_names = ["get", "options"]  # no HEAD: it would open a whole stream

    @extend_schema(
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, "The audio, in the job's format, as it is made"),
            409: OpenApiResponse(description="Not a speech job, or it failed or was canceled"),
            410: OpenApiResponse(description="The result expired"),
        }
    )
    def get(self, request: ApiRequest, job_id: str) -> StreamingHttpResponse:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        _check_streamable(job)
        chunks = _relayed(job_audio_chunks(job_id=job.id, tenant_id=job.tenant_id), job_id=job.id)
        response = ClosingStreamingHttpResponse(chunks, content_type=FORMATS[job.input["format"]].content_type)
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies: pass each chunk on at once
        return response


def _check_streamable(job: Job) -> None:
    """The answers known before the stream starts, as errors with a status."""
    if job.kind != Job.Kind.TTS:
        raise ApplicationError("stream_unavailable", "Only speech jobs stream audio.", status=409, details={"kind": job.kind})
    if job.status == Job.Status.EXPIRED or (job.result_expires_at and job.result_expires_at < timezone.now()):
        raise ApplicationError("result_expired", "The result has expired and was deleted.", status=410)
    if job.status in (Job.Status.FAILED, Job.Status.CANCELED):
        code = "job_failed" if job.status == Job.Status.FAILED else "job_canceled"
        raise ApplicationError(code, f"The job is {job.status}; it has no audio.", status=409, details={"status": job.status})


async def _relayed(chunks: AsyncGenerator[bytes, None], *, job_id: Any) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(chunks):  # closed with this one: a disconnect reaches the relay at once
            async for chunk in chunks:
                yield chunk
    except AudioStreamError as exc:
        logger.info("audio stream ended without the audio", extra={"job_id": str(job_id), "error_code": exc.code})
        raise RequestAborted(exc.code) from exc  # Django drops the connection: the body stays incomplete


class UsageApi(APIView):
    """This month's counters and the tenant's limits."""

    @extend_schema(responses=UsageSerializer)
    def get(self, request: ApiRequest) -> Response:
        return Response(selectors.usage_summary(tenant=request.user.tenant))
