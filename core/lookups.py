"""Tenant-scoped lookups: another tenant's object and a malformed id look
exactly like a missing one (404), so ids reveal nothing across tenants."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet

from core.errors import NotFound

M = TypeVar("M", bound=Model)


def id_or_404(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found.") from None


def owned_or_404(queryset: QuerySet[M], *, tenant: Any, object_id: Any, what: str) -> M:
    # get(), not first(): first() orders by the model's ordering, and
    # compiling that ORDER BY was an eighth of a GET /v1/jobs/{id} (profiled)
    # for a lookup of one row by its primary key.
    try:
        return queryset.get(tenant=tenant, id=id_or_404(object_id, what))
    except ObjectDoesNotExist:
        raise NotFound(f"{what} not found.") from None
