from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from core.errors import ApplicationError
from tenants.auth_cache import api_key_cache_clear
from tenants.models import ApiKey, Tenant, UsagePeriod


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", actor: str = "system") -> Tenant:
    if Tenant.objects.filter(slug=slug).exists():
        raise ApplicationError("tenant_exists", f"Tenant '{slug}' already exists.", status=409)
    tenant = Tenant(slug=slug, name=name or slug)
    tenant.full_clean()
    tenant.save()
    audit_record(action="tenant.create", actor=actor, tenant=tenant, target=tenant)
    return tenant


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str, expires_at: datetime | None = None, actor: str = "system") -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored."""
    key, raw_key = ApiKey.objects.create_key(tenant=tenant, name=name, expiry_date=expires_at)
    api_key = cast(ApiKey, key)  # the manager makes its own model (typed as the abstract base)
    audit_record(action="api_key.create", actor=actor, tenant=tenant, target=api_key, metadata={"name": name, "prefix": api_key.prefix})
    return api_key, raw_key


def auth_cache_invalidate() -> None:
    """After a change to a tenant (suspension) or a key (expiry) made outside
    ``api_key_revoke``: this process authenticates against the new rows at
    once (and again when the current transaction commits), the other
    processes within ``AUTH_CACHE_TTL_S``."""
    api_key_cache_clear()


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: str = "system") -> ApiKey:
    if api_key.revoked:
        return api_key
    ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
    api_key.revoked = True
    # Refused by this process at once, by the others within AUTH_CACHE_TTL_S.
    api_key_cache_clear()
    audit_record(action="api_key.revoke", actor=actor, tenant=api_key.tenant, target=api_key, metadata={"prefix": api_key.prefix})
    return api_key


def api_keys_revoke_named(*, tenant: Tenant, name: str, actor: str = "system") -> int:
    """Revoke a tenant's active keys with this name (used to rotate the demo key)."""
    keys = list(ApiKey.objects.filter(tenant=tenant, name=name, revoked=False))
    for api_key in keys:
        api_key_revoke(api_key=api_key, actor=actor)
    return len(keys)


def usage_period(now: datetime | None = None) -> str:
    return (now or timezone.now()).strftime("%Y-%m")


def usage_record(*, tenant_id: Any, audio_seconds: float = 0.0, video_seconds: float = 0.0, jobs: int = 0, cache_hits: int = 0) -> None:
    """Add to this month's counters (atomic increments, safe from many workers)."""
    period = usage_period()
    increments = {
        "audio_seconds": F("audio_seconds") + audio_seconds,
        "video_seconds": F("video_seconds") + video_seconds,
        "jobs_succeeded": F("jobs_succeeded") + jobs,
        "cache_hits": F("cache_hits") + cache_hits,
    }
    if not UsagePeriod.objects.filter(tenant_id=tenant_id, period=period).update(**increments):
        UsagePeriod.objects.get_or_create(tenant_id=tenant_id, period=period)  # the month's first job
        UsagePeriod.objects.filter(tenant_id=tenant_id, period=period).update(**increments)
