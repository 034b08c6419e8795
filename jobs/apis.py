"""Thin views: validate with a serializer, call a service or selector,
return a representation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.context import client_ip
from core.errors import ApplicationError
from core.idempotency import idempotent
from core.fields import MetadataField, StrictCharField, StrictFloatField, StrictSerializer
from core.pagination import NewestFirstCursorPagination
from core.schema import page_of
from core.storage import storage_is_local
from engines.audio.io import FORMATS
from jobs import events, selectors, services
from jobs.models import Job
from jobs.representation import job_representation
from jobs.schemas import JobSerializer, UsageSerializer
from jobs.streams import job_event_stream
from voices.selectors import voice_get
from webhooks.services import EVENT_TYPES, job_webhook_check


def _base_url(request: Request) -> str:
    return request.build_absolute_uri("/")


def _represent(job: Job, request: Request) -> dict[str, Any]:
    return job_representation(job, base_url=_base_url(request))


class TtsCreateApi(APIView):
    class InputSerializer(StrictSerializer):
        text = StrictCharField(max_length=settings.TTS_MAX_TEXT_CHARS)
        language = StrictCharField(required=False, max_length=35)
        engine = StrictCharField(required=False, max_length=64)
        format = serializers.ChoiceField(choices=sorted(FORMATS), default="wav")
        speed = StrictFloatField(required=False, default=1.0, min_value=0.5, max_value=2.0)
        voice_id = serializers.UUIDField(required=False, help_text="One of the tenant's ready voices (POST /v1/voices)")
        instruct = StrictCharField(
            required=False, max_length=500, help_text="Style instruction: emotion, speed, dialect (engines with the 'instruct' option)"
        )
        metadata = MetadataField(required=False, default=dict)
        priority = serializers.ChoiceField(choices=Job.Priority.choices, default=Job.Priority.NORMAL)
        cache = serializers.BooleanField(default=True, help_text="false: always run the engine, even for a repeated request")
        webhook_url = StrictCharField(required=False, max_length=2000)
        webhook_events = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, allow_empty=False, max_length=len(EVENT_TYPES)
        )

    @extend_schema(request=InputSerializer, responses={202: JobSerializer, 200: OpenApiResponse(JobSerializer, "Replayed for a repeated Idempotency-Key")})
    @idempotent
    def post(self, request: Request) -> Response:
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
        )
        webhook = services.WebhookTarget()
        if values.get("webhook_url"):
            job_webhook_check(url=values["webhook_url"], event_types=values.get("webhook_events"))
            webhook = services.WebhookTarget(url=values["webhook_url"], events=values.get("webhook_events"))
        client = request.user
        job = services.job_submit_tts(
            webhook=webhook,
            priority=values["priority"],
            use_cache=values["cache"],
            tenant=client.tenant,
            api_key=client.api_key,
            params=params,
            metadata=values["metadata"],
            actor=client.actor,
            ip=client_ip(request),
        )
        location = reverse("jobs:detail", args=[job.id])
        return Response(_represent(job, request), status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class JobListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
        kind = serializers.ChoiceField(choices=Job.Kind.choices, required=False)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[FilterSerializer, OpenApiParameter("cursor", str), OpenApiParameter("limit", int)],
        responses=page_of(JobSerializer, "JobPage"),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(tenant=request.user.tenant, **filters.validated_data)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response([_represent(job, request) for job in page])


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        return Response(_represent(job, request))


class JobResultApi(APIView):
    """The result file: streamed by Django for local storage, otherwise a
    redirect to the storage's (signed) URL."""

    @extend_schema(responses={(200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, "The file (local storage)"), 302: OpenApiResponse(description="Redirect to a presigned URL (object storage)")})
    def get(self, request: Request, job_id: str) -> FileResponse | HttpResponseRedirect:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        if job.status == Job.Status.EXPIRED or (job.result_expires_at and job.result_expires_at < timezone.now()):
            raise ApplicationError("result_expired", "The result has expired and was deleted.", status=410)
        if job.status != Job.Status.SUCCEEDED:
            raise ApplicationError(
                "result_not_ready", f"The job is {job.status}; a result exists once it succeeded.", status=409,
                details={"status": job.status},
            )
        if not storage_is_local():
            return HttpResponseRedirect(job_representation(job)["result"]["url"])
        try:
            handle = default_storage.open(job.result_key, "rb")
        except FileNotFoundError:
            raise ApplicationError("result_missing", "The result file is missing from storage.", status=410) from None
        filename = f"{job.id}{'.' + job.result_key.rsplit('.', 1)[-1] if '.' in job.result_key else ''}"
        return FileResponse(handle, content_type=job.result_content_type, as_attachment=False, filename=filename)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobSerializer)
    @idempotent
    def post(self, request: Request, job_id: str) -> Response:
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

    @extend_schema(parameters=[OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER), OpenApiParameter("last_event_id", str)], responses={(200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, "Server-Sent Events: status, progress, done")})
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        last_event_id = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id") or ""
        if last_event_id and not events.is_event_id(last_event_id):
            field_error = [{"message": "Not an event id.", "code": "invalid"}]
            raise ApplicationError(
                "validation_error", "Last-Event-ID must be an id this stream sent.", details={"fields": {"Last-Event-ID": field_error}}
            )
        stream = job_event_stream(job_id=job.id, last_event_id=last_event_id, base_url=_base_url(request))
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx/Traefik-style proxies: do not buffer
        return response


class UsageApi(APIView):
    """This month's counters and the tenant's limits."""

    @extend_schema(responses=UsageSerializer)
    def get(self, request: Request) -> Response:
        return Response(selectors.usage_summary(tenant=request.user.tenant))
