"""/metrics: Prometheus text that a real parser reads, request and job
metrics recorded where they happen, queue and job state read at scrape."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs import services
from jobs.models import Job

pytestmark = pytest.mark.django_db


def _scrape(client, **headers) -> dict[str, list]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    matching = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(matching)


def test_requests_are_counted_and_timed_by_route_not_by_path(client, api):
    before = _scrape(client)
    job_id = api.post("/v1/tts", {"text": "Count me.", "engine": "tone"}, format="json").json()["id"]
    api.get(f"/v1/jobs/{job_id}")
    api.get("/v1/jobs/00000000-0000-4000-8000-000000000000")  # a 404 on the same route
    after = _scrape(client)

    route = "v1/jobs/<str:job_id>"
    for status in ("200", "404"):
        grew = _value(after, "mynah_http_requests_total", route=route, method="GET", status=status) - _value(
            before, "mynah_http_requests_total", route=route, method="GET", status=status
        )
        assert grew == 1
    assert _value(after, "mynah_http_requests_total", route="v1/tts", method="POST", status="202") >= 1
    assert _value(after, "mynah_http_request_duration_seconds_count", route=route, method="GET") >= 2
    # No job id ever becomes a label value (unbounded cardinality).
    assert not any(job_id in str(s.labels) for samples in after.values() for s in samples)


def test_jobs_by_status_and_queue_depth_are_read_at_scrape_time(client, tenant, api, stub_broker):
    for text in ("One.", "Two.", "Three."):
        api.post("/v1/tts", {"text": text, "engine": "tone"}, format="json")
    Job.objects.filter(id=Job.objects.order_by("created_at").first().id).update(status="running")
    samples = _scrape(client)
    assert _value(samples, "mynah_jobs", kind="tts", status="queued") == 2
    assert _value(samples, "mynah_jobs", kind="tts", status="running") == 1
    assert _value(samples, "mynah_jobs", kind="talking_head", status="queued") == 0
    # Queue depth comes from the Redis broker's keys: every queue is listed.
    queues = {s.labels["queue"] for s in samples["mynah_queue_messages"]}
    assert {"tts", "tts-high", "video", "video-high", "video-hires", "voices", "webhooks"} <= queues
    assert _value(samples, "mynah_dependency_up", dependency="database") == 1
    assert _value(samples, "mynah_dependency_up", dependency="redis") == 1


def test_redis_down_is_reported_not_fatal(client, settings):
    from core.redis_server import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    samples = _scrape(client)
    assert _value(samples, "mynah_dependency_up", dependency="redis") == 0
    assert _value(samples, "mynah_dependency_up", dependency="database") == 1
    assert "mynah_queue_messages" not in samples


def test_engine_time_queue_wait_and_outcomes_are_recorded_by_the_worker(client, tenant, api, stub_broker):
    before = _scrape(client)
    good = api.post("/v1/tts", {"text": "Fine.", "engine": "tone"}, format="json").json()["id"]
    bad = api.post("/v1/tts", {"text": "No.", "engine": "rejecting"}, format="json").json()["id"]
    services.job_run(job_id=good)
    services.job_run(job_id=bad)
    after = _scrape(client)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("mynah_engine_run_seconds_count", engine="tone", outcome="succeeded") == 1
    assert grew("mynah_engine_run_seconds_count", engine="rejecting", outcome="failed") == 1
    assert grew("mynah_engine_run_seconds_sum", engine="tone") > 0
    assert grew("mynah_job_queue_wait_seconds_count", kind="tts") == 2
    assert grew("mynah_jobs_finished_total", kind="tts", status="succeeded", error_code="") == 1
    assert grew("mynah_jobs_finished_total", kind="tts", status="failed", error_code="text_rejected") == 1


def test_a_metrics_token_is_required_when_configured(client, settings, redis_url):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_metrics_token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200


@pytest.mark.django_db
def test_probes_and_scrapes_by_pod_ip_pass_the_host_check_and_nothing_else_does(client, settings, redis_url):
    """Kubelet probes and Prometheus address a pod by IP, which ALLOWED_HOSTS refuses."""
    settings.ALLOWED_HOSTS = ["api.example.com"]
    pod_ip = {"HTTP_HOST": "10.42.0.17:8000"}
    assert client.get("/healthz", **pod_ip).status_code == 200
    assert client.get("/readyz", **pod_ip).status_code in (200, 503)  # answered, whatever the dependencies say
    assert client.get("/metrics", **pod_ip).status_code == 200
    assert client.get("/v1/jobs", **pod_ip).status_code == 400
    assert client.get("/admin/login/", **pod_ip).status_code == 400
    assert client.post("/healthz", **pod_ip).status_code == 400  # only GET and HEAD are let through
    scrape = client.get("/metrics", **pod_ip).content.decode()
    # Still counted by route; only the refused hosts (400) matched no route.
    assert 'route="healthz",status="200"' in scrape and 'route="unmatched",status="200"' not in scrape
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", **pod_ip).status_code == 401  # the token still applies
