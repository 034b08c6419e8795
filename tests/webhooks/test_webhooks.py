"""Webhooks against real HTTP receivers on loopback, verified with the
reference ``standardwebhooks`` library; deliveries run on a Dramatiq worker."""

from __future__ import annotations

import ipaddress
import json
import socket
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from jobs import services as job_services
from jobs.models import Job
from jobs.services import TtsParams
from tests.support.receivers import Receiver, Reply
from tests.support.workers import running_worker
from webhooks import services, transport
from webhooks.models import Delivery, Endpoint

LOOPBACK = ["127.0.0.0/8", "::1/128"]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    settings.WEBHOOK_READ_TIMEOUT_S = 0.5
    settings.WEBHOOK_CONNECT_TIMEOUT_S = 0.5
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    return settings


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError("condition not met")


def _finished(delivery_id):
    return _wait(lambda: Delivery.objects.filter(id=delivery_id, status__in=["succeeded", "failed"]).first())


def _endpoint(tenant, url, event_types=()):
    return services.endpoint_create(tenant=tenant, url=url, event_types=list(event_types), actor="test")


def _publish(tenant, event_type="job.succeeded"):
    [delivery] = services.event_publish(tenant=tenant, event_type=event_type, data={"id": "job-1", "status": "succeeded"})
    return delivery


def _verify(secret, received) -> dict:
    return Webhook(secret).verify(received.body, received.headers)


# ------------------------------------------------------------------ delivery


def test_delivery_is_signed_per_standard_webhooks(tenant, allow_loopback, stub_broker):
    with Receiver() as receiver, running_worker(stub_broker, worker_timeout=20):
        endpoint = _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        assert _finished(delivery.id).status == "succeeded"
    [received] = receiver.requests
    assert received.headers["webhook-id"] == str(delivery.id)
    payload = _verify(endpoint.secret, received)
    assert payload["type"] == "job.succeeded" and payload["data"] == {"id": "job-1", "status": "succeeded"}
    with pytest.raises(WebhookVerificationError):
        Webhook(services.signing.secret_generate()).verify(received.body, received.headers)


def test_5xx_and_timeouts_retry_with_backoff_until_one_success(tenant, allow_loopback, stub_broker):
    replies = [Reply(500), Reply(200, delay_s=1.5), Reply(503), Reply(200)]
    with Receiver(replies) as receiver, running_worker(stub_broker, worker_timeout=20):
        endpoint = _endpoint(tenant, receiver.url)
        delivery = _finished(_publish(tenant).id)
        time.sleep(0.5)  # nothing more may arrive after the success
    assert delivery.status == "succeeded" and delivery.attempts == 4
    assert len(receiver.requests) == 4
    assert len({received.headers["webhook-id"] for received in receiver.requests}) == 1
    for received in receiver.requests:
        _verify(endpoint.secret, received)
    gaps = [later.at - earlier.at for earlier, later in zip(receiver.requests, receiver.requests[1:], strict=False)]
    schedule = allow_loopback.WEBHOOK_RETRY_SCHEDULE_S
    assert gaps[0] >= schedule[0] * 0.8
    assert gaps[2] >= schedule[2] * 0.8
    log = list(delivery.attempt_log.values_list("status_code", "error"))
    assert log[0] == (500, "") and log[1] == (None, "Timed out.") and log[2] == (503, "") and log[3] == (200, "")


def test_4xx_is_permanent(tenant, allow_loopback, stub_broker):
    with Receiver([Reply(400)]) as receiver, running_worker(stub_broker, worker_timeout=20):
        _endpoint(tenant, receiver.url)
        delivery = _finished(_publish(tenant).id)
        time.sleep(0.4)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 400)
    assert len(receiver.requests) == 1


def test_410_gone_disables_the_endpoint(tenant, allow_loopback, stub_broker):
    with Receiver([Reply(410)]) as receiver, running_worker(stub_broker, worker_timeout=20):
        endpoint = _endpoint(tenant, receiver.url)
        _finished(_publish(tenant).id)
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled and "410" in endpoint.disabled_reason
    assert services.event_publish(tenant=tenant, event_type="job.succeeded", data={}) == []


def test_retries_exhausted_fail_and_repeated_failures_disable_the_endpoint(tenant, allow_loopback, stub_broker):
    schedule = allow_loopback.WEBHOOK_RETRY_SCHEDULE_S
    with Receiver([Reply(500)]) as receiver, running_worker(stub_broker, worker_timeout=20):
        endpoint = _endpoint(tenant, receiver.url)
        first = _finished(_publish(tenant).id)
        assert (first.status, first.attempts) == ("failed", len(schedule) + 1)
        for _ in range(allow_loopback.WEBHOOK_DISABLE_AFTER_FAILURES - 1):
            _finished(_publish(tenant).id)
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    assert "in a row" in endpoint.disabled_reason
    assert len(receiver.requests) == allow_loopback.WEBHOOK_DISABLE_AFTER_FAILURES * (len(schedule) + 1)


def test_a_success_resets_the_failure_count(tenant, allow_loopback, stub_broker):
    with Receiver([Reply(400), Reply(400), Reply(200)]) as receiver, running_worker(stub_broker, worker_timeout=20):
        endpoint = _endpoint(tenant, receiver.url)
        for _ in range(3):
            _finished(_publish(tenant).id)
    endpoint.refresh_from_db()
    assert endpoint.is_enabled and endpoint.consecutive_failures == 0


def test_event_filter_and_disabled_endpoints(tenant, allow_loopback):
    with Receiver() as receiver:
        only_failures = _endpoint(tenant, receiver.url, ["job.failed"])
        everything = _endpoint(tenant, receiver.url + "?all")
        services.endpoint_update(endpoint=everything, is_enabled=False, actor="test")
        assert services.event_publish(tenant=tenant, event_type="job.succeeded", data={}) == []
        [delivery] = services.event_publish(tenant=tenant, event_type="job.failed", data={})
        assert delivery.endpoint_id == only_failures.id


def test_secret_rotation_signs_with_both_secrets_during_the_grace_period(tenant, allow_loopback, stub_broker):
    with Receiver() as receiver, running_worker(stub_broker, worker_timeout=20):
        endpoint = _endpoint(tenant, receiver.url)
        old_secret = endpoint.secret
        services.endpoint_secret_rotate(endpoint=endpoint, actor="test")
        _finished(_publish(tenant).id)
        endpoint.refresh_from_db()
        [received] = receiver.requests
        assert len(received.headers["webhook-signature"].split()) == 2
        _verify(old_secret, received)  # receivers not yet updated keep working
        _verify(endpoint.secret, received)
        # After the grace period only the new secret signs.
        Endpoint.objects.filter(id=endpoint.id).update(previous_secret_expires_at=endpoint.created_at)
        _finished(_publish(tenant).id)
    later = receiver.requests[1]
    assert len(later.headers["webhook-signature"].split()) == 1
    _verify(endpoint.secret, later)
    with pytest.raises(WebhookVerificationError):
        _verify(old_secret, later)


def test_lost_messages_and_dead_workers_are_swept(tenant, allow_loopback, stub_broker):
    with Receiver() as receiver:
        _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        stub_broker.flush_all()  # the message never made it
        Delivery.objects.filter(id=delivery.id).update(status="sending", locked_until=delivery.created_at)  # worker died mid-send
        assert services.webhooks_sweep() == 1
        with running_worker(stub_broker, worker_timeout=20):
            assert _finished(delivery.id).status == "succeeded"
        assert services.webhooks_sweep() == 0
    assert len(receiver.requests) == 1


def test_a_duplicate_message_never_sends_twice(tenant, allow_loopback, stub_broker):
    with Receiver() as receiver:
        _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        services.webhook_deliver(delivery_id=str(delivery.id))
        services.webhook_deliver(delivery_id=str(delivery.id))
    assert len(receiver.requests) == 1
    assert Delivery.objects.get(id=delivery.id).attempts == 1


# --------------------------------------------------------------------- jobs


def test_job_lifecycle_reaches_a_per_job_webhook_url(api, tenant, allow_loopback, stub_broker):
    with Receiver() as receiver, running_worker(stub_broker, worker_timeout=20):
        response = api.post("/v1/tts", {"text": "Hello hook.", "engine": "tone", "webhook_url": receiver.url}, format="json")
        assert response.status_code == 202, response.content
        job_id = response.json()["id"]
        received = receiver.wait_for(2)
        secret = api.get("/v1/webhook-secret").json()["secret"]
    payloads = sorted((_verify(secret, item) for item in received), key=lambda payload: payload["timestamp"])
    assert [payload["type"] for payload in payloads] == ["job.started", "job.succeeded"]
    assert payloads[1]["data"]["id"] == job_id and payloads[1]["data"]["status"] == "succeeded"
    assert payloads[1]["data"]["result"]["url"].endswith(f"/v1/jobs/{job_id}/result")


def test_progress_webhooks_are_throttled(tenant, allow_loopback, stub_broker, redis_url):
    allow_loopback.WEBHOOK_PROGRESS_INTERVAL_S = 3600
    with Receiver() as receiver:
        _endpoint(tenant, receiver.url, ["job.progress"])
        params = TtsParams(text=" ".join(f"Sentence {i}." for i in range(20)), language="en", engine="tone", format="wav", speed=1.0)
        job = job_services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="t", ip=None, use_cache=False)
        job_services.job_run(job_id=str(job.id))
    assert Job.objects.get(id=job.id).status == "succeeded"
    assert Delivery.objects.filter(event_type="job.progress").count() == 1


def test_unsafe_per_job_webhook_url_is_refused_at_submit(api):
    response = api.post("/v1/tts", {"text": "hi", "webhook_url": "http://127.0.0.1:8000/hook"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsafe_webhook_url"
    assert not Job.objects.exists()


# ---------------------------------------------------------------------- API


def test_endpoint_api_create_list_update_delete_and_isolation(api, other_api, allow_loopback):
    created = api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook", "event_types": ["job.failed"]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["job.failed"] and body["enabled"] is True
    endpoint_id = body["id"]
    assert "secret" not in api.get(f"/v1/webhook-endpoints/{endpoint_id}").json()
    assert api.get(f"/v1/webhook-endpoints/{endpoint_id}/secret").json()["secret"] == body["secret"]
    assert [item["id"] for item in api.get("/v1/webhook-endpoints").json()["results"]] == [endpoint_id]
    updated = api.patch(f"/v1/webhook-endpoints/{endpoint_id}", {"enabled": False}, format="json")
    assert updated.json()["enabled"] is False
    rotated = api.post(f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate").json()
    assert rotated["secret"] != body["secret"] and rotated["previous_secret_expires_at"]
    for path in ("", "/secret"):
        assert other_api.get(f"/v1/webhook-endpoints/{endpoint_id}{path}").status_code == 404
    assert other_api.post(f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate").status_code == 404
    assert other_api.delete(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 404
    assert other_api.get("/v1/webhook-endpoints").json()["results"] == []
    assert api.delete(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 204
    assert api.get(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 404


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"url": "http://127.0.0.1/hook"}, "unsafe_webhook_url"),
        ({"url": "ftp://example.com/x"}, "unsafe_webhook_url"),
        ({"url": "http://127.0.0.1:9/hook", "event_types": ["job.exploded"]}, "validation_error"),
        ({"url": "http://127.0.0.1:9/hook", "secret": "mine"}, "validation_error"),
    ],
)
def test_endpoint_api_rejects_bad_input(api, settings, payload, code):
    settings.WEBHOOK_ALLOWED_NETWORKS = [] if payload["url"].startswith("http://127.0.0.1/") else LOOPBACK
    response = api.post("/v1/webhook-endpoints", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_replay_api_resends_with_the_same_id(api, other_api, tenant, allow_loopback, stub_broker):
    with Receiver() as receiver, running_worker(stub_broker, worker_timeout=20):
        _endpoint(tenant, receiver.url)
        delivery = _finished(_publish(tenant).id)
        assert other_api.post(f"/v1/webhook-deliveries/{delivery.id}/replay").status_code == 404
        response = api.post(f"/v1/webhook-deliveries/{delivery.id}/replay")
        assert response.status_code == 202
        receiver.wait_for(2)
        _finished(delivery.id)
    assert [item.headers["webhook-id"] for item in receiver.requests] == [str(delivery.id)] * 2
    detail = api.get(f"/v1/webhook-deliveries/{delivery.id}").json()
    assert detail["status"] == "succeeded" and len(detail["attempt_log"]) == 2
    assert [item["id"] for item in api.get("/v1/webhook-deliveries").json()["results"]] == [str(delivery.id)]
    assert other_api.get(f"/v1/webhook-deliveries/{delivery.id}").status_code == 404


def test_replay_of_a_pending_delivery_is_409(api, tenant, allow_loopback):
    _endpoint(tenant, "http://127.0.0.1:9/hook")
    delivery = _publish(tenant)
    response = api.post(f"/v1/webhook-deliveries/{delivery.id}/replay")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "delivery_in_progress"


# --------------------------------------------------------------------- SSRF


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://localhost:8000/",
        "https://localhost/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://user:pass@127.0.0.1/",
        "gopher://127.0.0.1:6379/_",
        "http:///nohost",
        # IPv6 forms that embed a private IPv4 address, and deprecated ones
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:7f00:1]/",
        "http://[fec0::1]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    ],
)
def test_private_loopback_metadata_and_odd_urls_are_refused(url, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(transport.UnsafeTarget):
        transport.url_check(url)


def test_allowlist_permits_exactly_its_networks(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    transport.url_check("http://127.0.0.1:9/")
    with pytest.raises(transport.UnsafeTarget):
        transport.url_check("http://[::1]:9/")
    with pytest.raises(transport.UnsafeTarget):
        transport.url_check("http://10.0.0.1/")
    assert transport.address_is_forbidden(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert not transport.address_is_forbidden(ipaddress.ip_address("93.184.216.34"))
    # NAT64 and 6to4 of a public address are fine (IPv6-only clusters use NAT64).
    assert not transport.address_is_forbidden(ipaddress.ip_address("64:ff9b::5db8:d822"))
    assert not transport.address_is_forbidden(ipaddress.ip_address("2002:5db8:d822::1"))


def test_send_time_check_refuses_targets_no_longer_allowed(tenant, allow_loopback):
    with Receiver() as receiver:
        _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        allow_loopback.WEBHOOK_ALLOWED_NETWORKS = []
        services.webhook_deliver(delivery_id=str(delivery.id))
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "private or reserved" in delivery.last_error


def test_dns_rebinding_is_caught_at_connect_time(tenant, allow_loopback, monkeypatch):
    """The name passes the check (public address) but the connection lands on
    loopback: the peer address check refuses before a byte is sent."""
    with Receiver() as receiver:
        _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        allow_loopback.WEBHOOK_ALLOWED_NETWORKS = []
        monkeypatch.setattr(transport, "url_check", lambda url: None)  # the resolver said "public"
        outcome = transport.post(url=receiver.url, body=b"{}", headers={})
        services.webhook_deliver(delivery_id=str(delivery.id))
    assert receiver.requests == []  # no connection was even attempted
    assert outcome.refused and outcome.status_code is None and "private or reserved" in outcome.error
    assert Delivery.objects.get(id=delivery.id).status == "failed"


def test_redirects_are_not_followed(tenant, allow_loopback, stub_broker):
    with Receiver() as target:
        redirect = Reply(307, headers={"location": target.url})
        metadata = Reply(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})
        with Receiver([redirect, metadata]) as receiver:
            services.endpoint_create(tenant=tenant, url=receiver.url, event_types=[], actor="t")
            first = _publish(tenant)
            services.webhook_deliver(delivery_id=str(first.id))
            second = _publish(tenant)
            services.webhook_deliver(delivery_id=str(second.id))
    assert target.requests == []
    for delivery in (first, second):
        delivery.refresh_from_db()
        assert delivery.status == "failed" and "Redirects are not followed" in delivery.last_error


def test_ipv6_loopback_receiver_is_reachable_only_when_allowed(tenant, settings):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    settings.WEBHOOK_ALLOWED_NETWORKS = ["::1/128"]
    with Receiver(host="::1") as receiver:
        outcome = transport.post(url=receiver.url, body=json.dumps({}).encode(), headers={})
        assert outcome.succeeded
        settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        refused = transport.post(url=receiver.url, body=b"{}", headers={})
    assert refused.refused and len(receiver.requests) == 1


# -------------------------------------------------------------------- admin


def test_admin_warns_about_disabled_endpoints_and_replays_deliveries(admin_client, tenant, allow_loopback, stub_broker):
    with Receiver([Reply(410), Reply(200)]) as receiver:
        endpoint = _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        services.webhook_deliver(delivery_id=str(delivery.id))
        page = admin_client.get("/admin/webhooks/endpoint/")
        assert "disabled after failing deliveries" in page.content.decode()
        admin_client.post("/admin/webhooks/endpoint/", {"action": "enable_selected", "_selected_action": [endpoint.id]})
        response = admin_client.post("/admin/webhooks/delivery/", {"action": "replay_selected", "_selected_action": [delivery.id]})
        assert response.status_code == 302
        with running_worker(stub_broker, worker_timeout=20):
            _wait(lambda: Delivery.objects.get(id=delivery.id).status == "succeeded")
    assert [item.headers["webhook-id"] for item in receiver.requests] == [str(delivery.id)] * 2
    detail = admin_client.get(f"/admin/webhooks/delivery/{delivery.id}/change/").content.decode()
    assert "410" in detail and "200" in detail  # every attempt is shown


def test_admin_refuses_unsafe_endpoint_urls(admin_client, tenant, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    response = admin_client.post(
        "/admin/webhooks/endpoint/add/", {"tenant": tenant.id, "url": "http://169.254.169.254/", "event_types": "[]", "is_enabled": "on"}
    )
    assert response.status_code == 200 and "private or reserved" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_an_endpoint_added_elsewhere_is_seen_by_the_next_job(tenant, allow_loopback):
    """Workers cache endpoints per tenant; a change made by another process
    (the API) bumps the tenant's version, which the next job's row carries."""
    from django.db.models import F

    from tenants.models import Tenant

    assert services.event_publish(tenant=tenant, event_type="job.succeeded", data={}) == []  # cached: none
    Endpoint.objects.create(tenant=tenant, url="http://127.0.0.1:9/hook", secret=services.signing.secret_generate())
    Tenant.objects.filter(pk=tenant.pk).update(webhooks_version=F("webhooks_version") + 1)  # as endpoint_create does
    stale = Tenant.objects.get(pk=tenant.pk)
    stale.webhooks_version -= 1
    assert services.event_publish(tenant=stale, event_type="job.succeeded", data={}) == []  # same version: cache
    fresh = Tenant.objects.get(pk=tenant.pk)
    assert len(services.event_publish(tenant=fresh, event_type="job.succeeded", data={})) == 1


def test_a_stale_attempt_cannot_overwrite_a_newer_one(tenant, allow_loopback):
    """Attempt A's lease ran out mid-send and the sweeper handed the row to
    attempt B; A's late outcome must not touch B's result."""
    with Receiver([Reply(404), Reply(200)]) as receiver:
        endpoint = _endpoint(tenant, receiver.url)
        delivery = _publish(tenant)
        stale = services._claim(str(delivery.id))
        Delivery.objects.filter(id=delivery.id).update(locked_until=delivery.created_at)  # lease expired
        services.webhooks_sweep()
        services.webhook_deliver(delivery_id=str(delivery.id))  # attempt B: the receiver answers 404
        delivery.refresh_from_db()
        b_status = delivery.status
        services._record(stale, transport.SendOutcome(status_code=200, latency_ms=1, error="", response_excerpt=""), delivery.created_at)
    delivery.refresh_from_db()
    assert delivery.status == b_status == "failed" and delivery.attempts == 2
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1  # only B's outcome counted


def test_an_attempt_that_never_recorded_is_failed_by_the_sweeper_once_retries_are_spent(tenant, allow_loopback):
    _endpoint(tenant, "http://127.0.0.1:9/hook")
    delivery = _publish(tenant)
    spent = len(allow_loopback.WEBHOOK_RETRY_SCHEDULE_S) + 1
    Delivery.objects.filter(id=delivery.id).update(status="sending", attempts=spent, locked_until=delivery.created_at)
    assert services.webhooks_sweep() == 0
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "exhausted" in delivery.last_error


def test_deleting_an_endpoint_does_not_lose_other_targets(tenant, allow_loopback):
    keep = _endpoint(tenant, "http://127.0.0.1:9/keep")
    gone = _endpoint(tenant, "http://127.0.0.1:9/gone")
    services.event_publish(tenant=tenant, event_type="job.succeeded", data={})  # caches both
    Endpoint.objects.filter(id=gone.id).delete()  # deleted by another process: this cache is stale
    deliveries = services.event_publish(tenant=tenant, event_type="job.succeeded", data={}, job_webhook_url="http://127.0.0.1:9/job")
    assert sorted(d.url for d in deliveries) == ["http://127.0.0.1:9/job", keep.url]
