"""Thin views for voice prompts."""

from __future__ import annotations

from uuid import UUID

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.context import client_ip
from core.errors import ApplicationError, NotFound
from core.fields import StrictCharField, StrictSerializer
from core.idempotency import idempotent
from core.pagination import PAGE_PARAMETERS, NewestFirstCursorPagination
from core.schema import page_of
from engines import registry
from tenants.authentication import ApiRequest
from voices import asgi as voice_uploads
from voices import selectors, services
from voices.models import VoicePrompt
from voices.representation import voice_representation
from voices.schemas import VoiceSerializer


def _known_language(language: str) -> str:
    language = language.strip().lower()
    if not registry.language_supported(language):
        raise ApplicationError("unsupported_language", f"No engine speaks language '{language}'.", details={"language": language})
    return language


def _upload_replay(request: ApiRequest, voice_id: UUID) -> Response | None:
    """An Idempotency-Key's voice whose upload recorded no answer (its
    instance died after the commit): answered as the upload would, as it is now."""
    try:
        voice = selectors.voice_get(tenant=request.user.tenant, voice_id=str(voice_id))
    except NotFound:
        return None  # deleted since (a rejected upload is removed): the key runs again
    return _created(voice)


def _created(voice: VoicePrompt) -> Response:
    return Response(
        voice_representation(voice), status=status.HTTP_201_CREATED, headers={"Location": reverse("voices:detail", args=[voice.id])}
    )


class VoiceListCreateApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="VoiceCreate")  # unique: the schema had three "Input"s
    class InputSerializer(StrictSerializer):
        audio = serializers.FileField(allow_empty_file=True, help_text="3-30 s of speech; wav, flac, mp3, ogg, m4a or webm; at most 10 MB")
        name = StrictCharField(max_length=100)
        transcript = StrictCharField(required=False, allow_blank=True, max_length=1000, default="")
        language = StrictCharField(required=False, max_length=35, default="en")

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=VoicePrompt.Status.choices, required=False)

    @extend_schema(
        operation_id="voices_create",
        request={"multipart/form-data": InputSerializer},
        responses={
            201: OpenApiResponse(
                VoiceSerializer,
                "Analysed (ready), or still processing if analysis took longer than the wait "
                "or the tenant already has VOICE_ANALYSIS_WAITING_PER_TENANT uploads waiting",
            ),
            200: OpenApiResponse(VoiceSerializer, "Replayed for a repeated Idempotency-Key"),
        },
    )
    @idempotent(replay=_upload_replay)
    def post(self, request: ApiRequest) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        client = request.user
        voice = services.voice_create(
            tenant=client.tenant,
            upload=values["audio"],
            name=values["name"],
            language=_known_language(values["language"]),
            transcript=values["transcript"],
            actor=client.actor,
            ip=client_ip(request),
        )
        # Served by config.asgi, the wait for the verdict runs on the event
        # loop after this returns (voices.asgi, core.handoff): no thread waits on a worker.
        if not voice_uploads.wait_defer(
            voice_id=voice.id, tenant_id=voice.tenant_id, idempotency_key=request.headers.get("Idempotency-Key")
        ):
            voice = services.voice_wait_analyzed(voice=voice)
        return _created(voice)

    @extend_schema(
        operation_id="voices_list",
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses=page_of(VoiceSerializer, "VoicePage"),
    )
    def get(self, request: ApiRequest) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        voices = selectors.voice_list(tenant=request.user.tenant, **filters.validated_data)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(voices, request, view=self)
        return paginator.get_paginated_response([voice_representation(voice) for voice in page])


class VoiceDetailApi(APIView):
    @extend_schema(responses=VoiceSerializer)
    def get(self, request: ApiRequest, voice_id: str) -> Response:
        return Response(voice_representation(selectors.voice_get(tenant=request.user.tenant, voice_id=voice_id)))

    @extend_schema(responses={204: None})
    def delete(self, request: ApiRequest, voice_id: str) -> Response:
        voice = selectors.voice_get(tenant=request.user.tenant, voice_id=voice_id)
        services.voice_delete(voice=voice, actor=request.user.actor, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
