"""Webhook endpoints, deliveries and signing secrets over the API (thin views)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.context import client_ip
from core.fields import StrictCharField, StrictSerializer
from core.idempotency import idempotent
from core.pagination import PAGE_PARAMETERS, NewestFirstCursorPagination
from core.responses import iso as _iso
from core.schema import page_of
from tenants.authentication import ApiRequest
from webhooks import selectors, services
from webhooks.models import Delivery, Endpoint, SigningSecrets
from webhooks.schemas import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    EndpointSerializer,
    EndpointWithSecretSerializer,
    SecretSerializer,
)


def endpoint_representation(endpoint: Endpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body = {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "enabled": endpoint.is_enabled,
        "disabled_reason": endpoint.disabled_reason or None,
        "consecutive_failures": endpoint.consecutive_failures,
        "created_at": _iso(endpoint.created_at),
    }
    if with_secret:
        body.update(_secret_representation(endpoint))
    return body


def _secret_representation(holder: SigningSecrets) -> dict[str, Any]:
    return {"secret": holder.secret, "previous_secret_expires_at": _iso(holder.previous_secret_expires_at)}


def delivery_representation(delivery: Delivery, *, with_attempts: bool = False) -> dict[str, Any]:
    body = {
        "id": str(delivery.id),
        "endpoint_id": str(delivery.endpoint_id) if delivery.endpoint_id else None,
        "job_id": str(delivery.job_id) if delivery.job_id else None,
        "url": delivery.url,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": _iso(delivery.next_attempt_at) if delivery.status == Delivery.Status.PENDING else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "created_at": _iso(delivery.created_at),
        "finished_at": _iso(delivery.finished_at),
        "payload": delivery.payload,
    }
    if with_attempts:
        body["attempt_log"] = [
            {
                "number": attempt.number,
                "started_at": _iso(attempt.started_at),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "error": attempt.error or None,
            }
            for attempt in delivery.attempt_log.all()
        ]
    return body


class _EndpointInput(StrictSerializer):
    url = StrictCharField(max_length=2000)
    description = StrictCharField(required=False, max_length=200, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=services.EVENT_TYPES), required=False, max_length=len(services.EVENT_TYPES)
    )
    enabled = serializers.BooleanField(required=False)


class EndpointListApi(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_list",
        parameters=PAGE_PARAMETERS,
        responses=page_of(EndpointSerializer, "EndpointPage"),
    )
    def get(self, request: ApiRequest) -> Response:
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(selectors.endpoint_list(tenant=request.user.tenant), request, view=self)
        return paginator.get_paginated_response([endpoint_representation(endpoint) for endpoint in page])

    @extend_schema(request=_EndpointInput, responses={201: EndpointWithSecretSerializer, 200: EndpointWithSecretSerializer})
    @idempotent
    def post(self, request: ApiRequest) -> Response:
        data = _EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        endpoint = services.endpoint_create(
            tenant=request.user.tenant,
            url=values["url"],
            event_types=values.get("event_types", []),
            description=values.get("description", ""),
            actor=request.user.actor,
            ip=client_ip(request),
        )
        if values.get("enabled") is False:
            endpoint = services.endpoint_update(endpoint=endpoint, is_enabled=False, actor=request.user.actor, ip=client_ip(request))
        location = reverse("webhooks:endpoint-detail", args=[endpoint.id])
        return Response(endpoint_representation(endpoint, with_secret=True), status=status.HTTP_201_CREATED, headers={"Location": location})


class EndpointDetailApi(APIView):
    @extend_schema(responses=EndpointSerializer)
    def get(self, request: ApiRequest, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(tenant=request.user.tenant, endpoint_id=endpoint_id)
        return Response(endpoint_representation(endpoint))

    @extend_schema(request=_EndpointInput(partial=True), responses=EndpointSerializer)
    def patch(self, request: ApiRequest, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(tenant=request.user.tenant, endpoint_id=endpoint_id)
        data = _EndpointInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if "enabled" in changes:
            changes["is_enabled"] = changes.pop("enabled")
        endpoint = services.endpoint_update(endpoint=endpoint, actor=request.user.actor, ip=client_ip(request), **changes)
        return Response(endpoint_representation(endpoint))

    @extend_schema(responses={204: None})
    def delete(self, request: ApiRequest, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(tenant=request.user.tenant, endpoint_id=endpoint_id)
        services.endpoint_delete(endpoint=endpoint, actor=request.user.actor, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointSecretApi(APIView):
    @extend_schema(responses=SecretSerializer)
    def get(self, request: ApiRequest, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(tenant=request.user.tenant, endpoint_id=endpoint_id)
        return Response(_secret_representation(endpoint))


class EndpointSecretRotateApi(APIView):
    @extend_schema(request=None, responses=SecretSerializer)
    @idempotent
    def post(self, request: ApiRequest, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(tenant=request.user.tenant, endpoint_id=endpoint_id)
        endpoint = services.endpoint_secret_rotate(endpoint=endpoint, actor=request.user.actor, ip=client_ip(request))
        return Response(_secret_representation(endpoint))


class TenantSecretApi(APIView):
    """The secret that signs deliveries to per-job ``webhook_url``s."""

    @extend_schema(responses=SecretSerializer)
    def get(self, request: ApiRequest) -> Response:
        return Response(_secret_representation(services.tenant_signing_secret(tenant=request.user.tenant)))


class TenantSecretRotateApi(APIView):
    @extend_schema(request=None, responses=SecretSerializer)
    @idempotent
    def post(self, request: ApiRequest) -> Response:
        holder = services.tenant_signing_secret_rotate(tenant=request.user.tenant, actor=request.user.actor, ip=client_ip(request))
        return Response(_secret_representation(holder))


class DeliveryListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        endpoint_id = serializers.UUIDField(required=False)
        job_id = serializers.UUIDField(required=False)
        status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)

    @extend_schema(
        operation_id="webhook_deliveries_list",
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses=page_of(DeliverySerializer, "DeliveryPage"),
    )
    def get(self, request: ApiRequest) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        deliveries = selectors.delivery_list(tenant=request.user.tenant, **filters.validated_data)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response([delivery_representation(delivery) for delivery in page])


class DeliveryDetailApi(APIView):
    @extend_schema(responses=DeliveryDetailSerializer)
    def get(self, request: ApiRequest, delivery_id: str) -> Response:
        delivery = selectors.delivery_get(tenant=request.user.tenant, delivery_id=delivery_id)
        return Response(delivery_representation(delivery, with_attempts=True))


class DeliveryReplayApi(APIView):
    @extend_schema(request=None, responses={202: DeliverySerializer, 200: DeliverySerializer})
    @idempotent
    def post(self, request: ApiRequest, delivery_id: str) -> Response:
        delivery = selectors.delivery_get(tenant=request.user.tenant, delivery_id=delivery_id)
        delivery = services.delivery_replay(delivery=delivery, actor=request.user.actor, ip=client_ip(request))
        return Response(delivery_representation(delivery), status=status.HTTP_202_ACCEPTED)
