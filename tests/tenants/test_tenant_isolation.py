"""Every endpoint that takes an id, tried with another tenant's ids: 404."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.services import TtsParams
from webhooks import services as webhook_services


@pytest.fixture
def theirs(other_tenant, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    params = TtsParams(text="Their job.", language="en", engine="tone", format="wav", speed=1.0)
    job = services.job_submit_tts(tenant=other_tenant, api_key=None, params=params, metadata={}, actor="t", ip=None)
    services.job_run(job_id=str(job.id))
    endpoint = webhook_services.endpoint_create(tenant=other_tenant, url="http://127.0.0.1:9/hook", event_types=[], actor="t")
    [delivery] = webhook_services.event_publish(tenant=other_tenant, event_type="job.succeeded", data={})
    return {"job": job.id, "endpoint": endpoint.id, "delivery": delivery.id}


MATRIX = [
    ("get", "/v1/jobs/{job}"),
    ("get", "/v1/jobs/{job}/result"),
    ("get", "/v1/jobs/{job}/events"),
    ("post", "/v1/jobs/{job}/cancel"),
    ("get", "/v1/webhook-endpoints/{endpoint}"),
    ("patch", "/v1/webhook-endpoints/{endpoint}"),
    ("delete", "/v1/webhook-endpoints/{endpoint}"),
    ("get", "/v1/webhook-endpoints/{endpoint}/secret"),
    ("post", "/v1/webhook-endpoints/{endpoint}/secret/rotate"),
    ("get", "/v1/webhook-deliveries/{delivery}"),
    ("post", "/v1/webhook-deliveries/{delivery}/replay"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path"), MATRIX)
def test_another_tenants_objects_are_404(api, theirs, method, path):
    response = getattr(api, method)(path.format(**theirs), {"enabled": False} if method == "patch" else None, format="json")
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_lists_filtered_by_another_tenants_ids_are_empty(api, theirs):
    assert api.get("/v1/jobs").json()["results"] == []
    assert api.get("/v1/webhook-endpoints").json()["results"] == []
    for query in (f"job_id={theirs['job']}", f"endpoint_id={theirs['endpoint']}", ""):
        assert api.get(f"/v1/webhook-deliveries?{query}").json()["results"] == []
    assert api.get("/v1/usage").json()["jobs"]["succeeded"] == 0
