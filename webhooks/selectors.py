"""Webhook reads, always scoped to one tenant (another tenant's id is a 404)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from core.errors import NotFound
from tenants.models import Tenant
from webhooks.models import Delivery, Endpoint


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found.") from None


def endpoint_get(*, tenant: Tenant, endpoint_id: Any) -> Endpoint:
    endpoint = Endpoint.objects.filter(tenant=tenant, id=_uuid(endpoint_id, "Endpoint")).first()
    if endpoint is None:
        raise NotFound("Endpoint not found.")
    return endpoint


def endpoint_list(*, tenant: Tenant) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def delivery_get(*, tenant: Tenant, delivery_id: Any) -> Delivery:
    delivery = Delivery.objects.filter(tenant=tenant, id=_uuid(delivery_id, "Delivery")).select_related("endpoint").first()
    if delivery is None:
        raise NotFound("Delivery not found.")
    return delivery


def delivery_list(
    *, tenant: Tenant, endpoint_id: Any = None, job_id: Any = None, status: str | None = None
) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.filter(tenant=tenant)
    if endpoint_id:
        deliveries = deliveries.filter(endpoint_id=_uuid(endpoint_id, "Endpoint"))
    if job_id:
        deliveries = deliveries.filter(job_id=_uuid(job_id, "Job"))
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-id")
