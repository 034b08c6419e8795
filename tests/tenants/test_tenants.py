from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, api_key_revoke


def _call(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_commands_create_tenant_and_print_the_key_last(db):
    _call("create_tenant", "initech", "--name", "Initech")
    lines = _call("create_api_key", "initech", "--name", "ci")
    raw_key = lines[-1]
    prefix, _, secret = raw_key.partition(".")
    api_key = ApiKey.objects.get(prefix=prefix)
    assert api_key.tenant.slug == "initech" and api_key.name == "ci"
    # Only a hash is stored: the secret appears nowhere in the row.
    assert secret not in api_key.hashed_key and api_key.hashed_key.startswith("sha512$$")
    assert AuditEvent.objects.filter(action="api_key.create", target_id=api_key.prefix, actor="cli").exists()
    assert AuditEvent.objects.filter(action="tenant.create", tenant__slug="initech").exists()


def test_commands_reject_duplicates_and_unknown_tenants(db):
    _call("create_tenant", "initech")
    with pytest.raises(CommandError, match="already exists"):
        _call("create_tenant", "initech")
    with pytest.raises(CommandError, match="No tenant"):
        _call("create_api_key", "nobody", "--name", "x")
    with pytest.raises(CommandError):
        _call("create_tenant", "Bad Slug!")


def test_revoke_command_records_audit(tenant):
    api_key, _ = api_key_create(tenant=tenant, name="old")
    _call("revoke_api_key", api_key.prefix)
    api_key.refresh_from_db()
    assert api_key.revoked
    assert AuditEvent.objects.filter(action="api_key.revoke", target_id=api_key.prefix).count() == 1


def _status_and_code(client: APIClient):
    response = client.get("/v1/jobs")
    body = response.json()
    return response.status_code, body.get("error", {}).get("code")


def test_missing_malformed_and_wrong_keys_are_401(tenant, redis_url):
    client = APIClient()
    assert _status_and_code(client) == (401, "missing_api_key")
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert _status_and_code(client) == (401, "invalid_api_key")
    client.credentials(HTTP_AUTHORIZATION="Bearer nodot")
    assert _status_and_code(client) == (401, "invalid_api_key")
    _, raw_key = api_key_create(tenant=tenant, name="k")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key[:-1]}{'y' if raw_key.endswith('x') else 'x'}")  # always a different secret
    assert _status_and_code(client) == (401, "invalid_api_key")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert _status_and_code(client)[0] == 200
    response = APIClient().get("/v1/jobs")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_and_expired_keys_are_401_and_a_suspended_tenant_is_403(tenant, redis_url):
    revoked, revoked_raw = api_key_create(tenant=tenant, name="r")
    api_key_revoke(api_key=revoked)
    _, expired_raw = api_key_create(tenant=tenant, name="e", expires_at=timezone.now() - timedelta(seconds=1))
    for raw in (revoked_raw, expired_raw):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert _status_and_code(client) == (401, "invalid_api_key")
    _, active_raw = api_key_create(tenant=tenant, name="a")
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {active_raw}")
    assert _status_and_code(client) == (403, "tenant_suspended")


def test_last_used_is_recorded_but_not_written_on_every_request(api, django_assert_max_num_queries):
    prefix = api.raw_key.split(".")[0]
    api.get("/v1/jobs")
    first = ApiKey.objects.get(prefix=prefix).last_used_at
    assert first is not None
    # Within the resolution window a request needs no write: key lookup + the
    # jobs page are the only queries.
    with django_assert_max_num_queries(2):
        api.get("/v1/jobs")
    assert ApiKey.objects.get(prefix=prefix).last_used_at == first
