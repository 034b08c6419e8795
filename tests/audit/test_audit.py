"""Audit: auth failures (rate-limited in the log), admin actions, append-only."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tenants.models import Tenant


def test_auth_failures_are_audited_once_per_client_per_interval(tenant, api, redis_url):
    import redis

    redis.Redis.from_url(redis_url).delete("mynah:audit-auth:127.0.0.1")
    prefix = api.raw_key.split(".")[0]
    for _ in range(5):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {prefix}.wrong-secret")
        assert client.get("/v1/jobs").status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer other.prefix")  # a different key from the same address
    client.get("/v1/jobs")
    failures = AuditEvent.objects.filter(action="auth.failure")
    assert failures.count() == 1
    wrong = failures.get()
    assert wrong.tenant == tenant and wrong.metadata == {"reason": "invalid_api_key", "path": "/v1/jobs"}
    assert "wrong-secret" not in str(list(failures.values()))  # secrets never reach the log


def test_suspended_tenant_attempts_are_audited(tenant, api, redis_url):
    import redis

    redis.Redis.from_url(redis_url).delete("mynah:audit-auth:127.0.0.1")
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    assert api.get("/v1/jobs").status_code == 403
    assert AuditEvent.objects.get(action="auth.failure").metadata["reason"] == "tenant_suspended"


def test_admin_changes_are_audited_and_events_cannot_be_edited(admin_client, tenant):
    response = admin_client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        {"slug": tenant.slug, "name": "Renamed", "is_active": "on", "max_active_jobs": "5"},
    )
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(action="admin.change")
    assert event.actor.startswith("staff:") and event.target_id == str(tenant.pk) and "Max active jobs" in event.metadata["change"]
    assert admin_client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    with pytest.raises(ValueError, match="append-only"):
        event.save()
