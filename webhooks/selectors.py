"""Webhook reads, always scoped to one tenant (another tenant's id is a 404)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.lookups import id_or_404, owned_or_404
from tenants.models import Tenant
from webhooks.models import Delivery, Endpoint


def endpoint_get(*, tenant: Tenant, endpoint_id: Any) -> Endpoint:
    return owned_or_404(Endpoint.objects.all(), tenant=tenant, object_id=endpoint_id, what="Endpoint")


def endpoint_list(*, tenant: Tenant) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def delivery_get(*, tenant: Tenant, delivery_id: Any) -> Delivery:
    return owned_or_404(Delivery.objects.select_related("endpoint"), tenant=tenant, object_id=delivery_id, what="Delivery")


def delivery_list(*, tenant: Tenant, endpoint_id: Any = None, job_id: Any = None, status: str | None = None) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.filter(tenant=tenant)
    if endpoint_id:
        deliveries = deliveries.filter(endpoint_id=id_or_404(endpoint_id, "Endpoint"))
    if job_id:
        deliveries = deliveries.filter(job_id=id_or_404(job_id, "Job"))
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-id")
