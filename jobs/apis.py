"""Thin views: validate with a serializer, call a service or selector,
return a representation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.fields import MetadataField, StrictCharField, StrictFloatField, StrictSerializer
from core.pagination import NewestFirstCursorPagination
from engines.audio.io import FORMATS
from jobs import selectors, services
from jobs.models import Job


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_representation(job: Job, request: Request) -> dict[str, Any]:
    result = None
    if job.status == Job.Status.SUCCEEDED:
        result = {
            "url": request.build_absolute_uri(reverse("jobs:result", args=[job.id])),
            "content_type": job.result_content_type,
            "duration_s": job.result_duration_s,
            "size_bytes": job.result_size_bytes,
            "expires_at": _iso(job.result_expires_at),
        }
    error = {"code": job.error_code, "message": job.error_message} if job.status == Job.Status.FAILED else None
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "priority": job.priority,
        "engine": job.engine,
        "progress": job.progress,
        "stage": job.stage,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "input": job.input,
        "result": result,
        "error": error,
        "cache_hit": False,
        "metadata": job.metadata,
    }


def _client_ip(request: Request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class TtsCreateApi(APIView):
    class InputSerializer(StrictSerializer):
        text = StrictCharField(max_length=settings.TTS_MAX_TEXT_CHARS)
        language = StrictCharField(required=False, max_length=35)
        engine = StrictCharField(required=False, max_length=64)
        format = serializers.ChoiceField(choices=sorted(FORMATS), default="wav")
        speed = StrictFloatField(required=False, default=1.0, min_value=0.5, max_value=2.0)
        metadata = MetadataField(required=False, default=dict)

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
        )
        client = request.user
        job = services.job_submit_tts(
            tenant=client.tenant,
            api_key=client.api_key,
            params=params,
            metadata=values["metadata"],
            actor=client.actor,
            ip=_client_ip(request),
        )
        location = reverse("jobs:detail", args=[job.id])
        return Response(job_representation(job, request), status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class JobListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
        kind = serializers.ChoiceField(choices=Job.Kind.choices, required=False)

    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(tenant=request.user.tenant, **filters.validated_data)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response([job_representation(job, request) for job in page])


class JobDetailApi(APIView):
    def get(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        return Response(job_representation(job, request))


class JobResultApi(APIView):
    """The result file: streamed by Django for local storage, otherwise a
    redirect to the storage's (signed) URL."""

    def get(self, request: Request, job_id: str) -> FileResponse | HttpResponseRedirect:
        job = selectors.job_get(tenant=request.user.tenant, job_id=job_id)
        if job.status == Job.Status.EXPIRED or (job.result_expires_at and job.result_expires_at < timezone.now()):
            raise ApplicationError("result_expired", "The result has expired and was deleted.", status=410)
        if job.status != Job.Status.SUCCEEDED:
            raise ApplicationError(
                "result_not_ready", f"The job is {job.status}; a result exists once it succeeded.", status=409,
                details={"status": job.status},
            )
        if not isinstance(default_storage, FileSystemStorage):
            return HttpResponseRedirect(default_storage.url(job.result_key))
        try:
            handle = default_storage.open(job.result_key, "rb")
        except FileNotFoundError:
            raise ApplicationError("result_missing", "The result file is missing from storage.", status=410) from None
        filename = f"{job.id}{'.' + job.result_key.rsplit('.', 1)[-1] if '.' in job.result_key else ''}"
        return FileResponse(handle, content_type=job.result_content_type, as_attachment=False, filename=filename)
