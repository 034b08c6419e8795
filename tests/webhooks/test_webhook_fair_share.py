"""Capacity isolation for webhooks: a per-tenant endpoint limit, and a fair
share of the webhook workers, so one tenant's slow receivers slow only that
tenant. Real receivers on loopback (one that answers only when the test lets
it), a real Dramatiq worker."""

from __future__ import annotations

import threading
import time

import pytest

import webhooks.actors  # noqa: F401  (declares the webhooks queue)
from tenants.models import Tenant
from tests.support.broker import queued_job_ids
from tests.support.receivers import Receiver, Reply
from tests.support.workers import running_worker
from webhooks import services
from webhooks.models import Delivery, Endpoint

LOOPBACK = ["127.0.0.0/8", "::1/128"]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    settings.WEBHOOK_READ_TIMEOUT_S = 60  # the slow receiver answers when the test says
    settings.WEBHOOK_CONNECT_TIMEOUT_S = 2
    return settings


def _wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not met within {timeout} s")


def _endpoints(tenant, url, count):
    return [services.endpoint_create(tenant=tenant, url=f"{url}?n={n}", event_types=[], actor="test") for n in range(count)]


def _in_flight(tenant):
    return services.deliveries_in_flight(tenant_id=tenant.pk)


# ---------------------------------------------------------------- endpoints


def test_endpoints_per_tenant_are_limited_with_a_clear_code(api, other_api, tenant, settings, allow_loopback):
    settings.TENANT_MAX_WEBHOOK_ENDPOINTS = 3
    urls = [f"http://127.0.0.1:9/hook/{n}" for n in range(4)]
    created = [api.post("/v1/webhook-endpoints", {"url": url}, format="json") for url in urls[:3]]
    assert [response.status_code for response in created] == [201, 201, 201]
    refused = api.post("/v1/webhook-endpoints", {"url": urls[3], "enabled": False}, format="json")
    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["code"] == "too_many_webhook_endpoints"
    assert error["details"] == {"endpoints": 3, "limit": 3} and error["request_id"]
    assert Endpoint.objects.filter(tenant=tenant).count() == 3
    # Another tenant has its own allowance.
    assert other_api.post("/v1/webhook-endpoints", {"url": urls[0]}, format="json").status_code == 201
    # Deleting one makes room; the tenant's own limit overrides the default.
    assert api.delete(f"/v1/webhook-endpoints/{created[0].json()['id']}").status_code == 204
    assert api.post("/v1/webhook-endpoints", {"url": urls[3]}, format="json").status_code == 201
    Tenant.objects.filter(pk=tenant.pk).update(max_webhook_endpoints=5)
    assert api.post("/v1/webhook-endpoints", {"url": urls[0]}, format="json").status_code == 201
    assert api.get("/v1/usage").json()["limits"]["max_webhook_endpoints"] == 5


def test_staff_get_the_endpoint_limit_as_a_form_error(admin_client, tenant, settings, allow_loopback):
    settings.TENANT_MAX_WEBHOOK_ENDPOINTS = 1
    _endpoints(tenant, "http://127.0.0.1:9/hook", 1)
    response = admin_client.post(
        "/admin/webhooks/endpoint/add/", {"tenant": tenant.id, "url": "http://127.0.0.1:9/more", "event_types": "[]", "is_enabled": "on"}
    )
    assert response.status_code == 200 and "the limit is 1" in response.content.decode()
    assert Endpoint.objects.filter(tenant=tenant).count() == 1


# --------------------------------------------------------------- fair share


@pytest.mark.integration
def test_a_slow_receiver_only_slows_its_own_tenant(api, other_api, tenant, other_tenant, allow_loopback, stub_broker):
    """Tenant A fans out to 12 endpoints at a receiver that does not answer.
    With 4 worker threads and A's share at 2, tenant B's job still runs and
    its webhooks arrive while A's deliveries are all still stuck. (Before the
    share, A's 12 deliveries took every thread and B waited for A's receiver.)"""
    Tenant.objects.filter(pk=tenant.pk).update(max_webhooks_in_flight=2, max_webhook_endpoints=50)
    stuck = threading.Event()
    with Receiver([Reply(hold=stuck)]) as slow, Receiver() as fast:
        try:
            _endpoints(tenant, slow.url, 12)
            with running_worker(stub_broker, worker_timeout=20, threads=4):
                services.event_publish(tenant=Tenant.objects.get(pk=tenant.pk), event_type="job.succeeded", data={"id": "a"})
                slow.wait_for(2, timeout=30)  # A's share is being sent (and hangs)
                response = other_api.post("/v1/tts", {"text": "Hello B.", "engine": "tone", "webhook_url": fast.url}, format="json")
                assert response.status_code == 202, response.content
                received = fast.wait_for(2, timeout=60)  # job.started and job.succeeded
                # A's receiver still has not answered anyone: B did not wait for it.
                assert not stuck.is_set()
                assert len(slow.requests) == 2
                assert Delivery.objects.filter(tenant=tenant, status="succeeded").count() == 0
                assert Delivery.objects.filter(tenant=tenant, status="sending").count() == 2
                assert Delivery.objects.filter(tenant=tenant, status="pending", enqueued_at__isnull=True).count() == 10
                assert {item.headers["webhook-id"] for item in received} == set(
                    map(str, Delivery.objects.filter(tenant=other_tenant).values_list("id", flat=True))
                )
                # A's receiver answers: A's waiting deliveries follow, never more than 2 at once.
                stuck.set()
                _wait(lambda: Delivery.objects.filter(tenant=tenant, status="succeeded").count() == 12, what="A's deliveries")
        finally:
            stuck.set()
    assert len(slow.requests) == 12
    assert len({item.headers["webhook-id"] for item in slow.requests}) == 12


def test_deliveries_over_the_share_wait_in_the_database_and_follow_in_order(tenant, allow_loopback, stub_broker):
    allow_loopback.WEBHOOK_RETRY_SCHEDULE_S = [60.0]
    allow_loopback.WEBHOOK_SWEEP_GRACE_S = 30.0  # the messages just sent are not presumed lost
    Tenant.objects.filter(pk=tenant.pk).update(max_webhooks_in_flight=3)
    _endpoints(tenant, "http://127.0.0.1:9/hook", 5)
    tenant.refresh_from_db()
    first = services.event_publish(tenant=tenant, event_type="job.started", data={})
    second = services.event_publish(tenant=tenant, event_type="job.succeeded", data={})
    released = Delivery.objects.filter(tenant=tenant, enqueued_at__isnull=False)
    assert released.count() == 3 == _in_flight(tenant) == len(queued_job_ids(stub_broker, "webhooks"))
    assert set(released.values_list("event_type", flat=True)) == {"job.started"}  # first due, first sent
    # A dispatcher called again (a duplicate trigger, the sweeper) adds nothing.
    assert services.deliveries_dispatch(tenant_id=tenant.pk) == 0
    assert services.webhooks_sweep() == 0
    # Each finished attempt releases the next waiting delivery of the tenant.
    stub_broker.flush_all()
    order = []
    for _ in range(len(first) + len(second)):
        sending = Delivery.objects.filter(tenant=tenant, status="pending", enqueued_at__isnull=False).order_by("enqueued_at").first()
        order.append(sending.event_type)
        services.webhook_deliver(delivery_id=str(sending.id))  # port 9: refused, retried later
        assert _in_flight(tenant) <= 3
    assert order == ["job.started"] * 5 + ["job.succeeded"] * 5
    # Waiting for a retry holds no share: all ten are waiting, none in flight.
    assert _in_flight(tenant) == 0
    assert Delivery.objects.filter(tenant=tenant, status="pending", attempts=1, enqueued_at__isnull=True).count() == 10


def test_a_retry_wake_up_and_the_sweeper_respect_the_share(tenant, allow_loopback, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_webhooks_in_flight=1)
    _endpoints(tenant, "http://127.0.0.1:9/hook", 3)
    tenant.refresh_from_db()
    deliveries = services.event_publish(tenant=tenant, event_type="job.failed", data={})
    now_due = Delivery.objects.filter(tenant=tenant)
    sending = now_due.get(enqueued_at__isnull=False)
    waiting = [d for d in deliveries if d.id != sending.id]
    # A waiting delivery's message (its retry's wake-up) does not jump the share.
    services.webhook_deliver(delivery_id=str(waiting[0].id))
    assert Delivery.objects.get(id=waiting[0].id).attempts == 0 and _in_flight(tenant) == 1
    # The in-flight one is lost with its worker: the sweeper hands its share on, once.
    Delivery.objects.filter(id=sending.id).update(status="sending", locked_until=sending.created_at)
    stub_broker.flush_all()
    assert services.webhooks_sweep() == 1
    assert _in_flight(tenant) == 1


@pytest.mark.integration
def test_replay_goes_through_the_share(api, tenant, allow_loopback, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_webhooks_in_flight=1)
    stuck = threading.Event()
    with Receiver([Reply(hold=stuck)]) as slow, Receiver() as fast:
        try:
            [fast_endpoint] = _endpoints(tenant, fast.url, 1)
            tenant.refresh_from_db()
            [done] = services.event_publish(tenant=tenant, event_type="job.succeeded", data={})
            services.webhook_deliver(delivery_id=str(done.id))
            services.endpoint_update(endpoint=fast_endpoint, is_enabled=False, actor="test")
            _endpoints(tenant, slow.url, 1)
            tenant.refresh_from_db()
            services.event_publish(tenant=tenant, event_type="job.succeeded", data={})
            with running_worker(stub_broker, worker_timeout=20, threads=2):
                slow.wait_for(1, timeout=30)
                services.endpoint_update(endpoint=fast_endpoint, is_enabled=True, actor="test")
                replayed = api.post(f"/v1/webhook-deliveries/{done.id}/replay")
                assert replayed.status_code == 202, replayed.content
                # The replay waits its turn behind the tenant's stuck delivery.
                assert Delivery.objects.get(id=done.id).enqueued_at is None
                assert len(fast.requests) == 1
                stuck.set()
                _wait(lambda: len(fast.requests) == 2, what="the replay")
        finally:
            stuck.set()
    assert fast.requests[0].headers["webhook-id"] == fast.requests[1].headers["webhook-id"] == str(done.id)
