"""The staff admin: jobs (filters, search, progress, players, actions),
tenants (limits, usage), API keys (shown once, revoke), escaping of user text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from audit.models import AuditEvent
from engines.audio.io import decode_audio
from engines.errors import Canceled
from jobs import services
from jobs.models import Job
from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db
XSS = "<script>alert('x')</script>"


def _submit(api, text: str, **extra) -> str:
    response = api.post("/v1/tts", {"text": text, "engine": "tone", "cache": False, **extra}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _changelist(admin_client, **params) -> str:
    response = admin_client.get("/admin/jobs/job/", params)
    assert response.status_code == 200
    return response.content.decode()


def _listed(page: str) -> set[str]:
    return set(re.findall(r'href="/admin/jobs/job/([0-9a-f-]{36})/change/', page))


def test_jobs_filter_by_status_kind_engine_tenant_and_search_by_id_or_metadata(admin_client, tenant, api, other_api, stub_broker):
    done = _submit(api, "Finished one.", metadata={"order": "A-1001"})
    services.job_run(job_id=done)
    waiting = _submit(api, "Waiting one.", metadata={"order": "B-2002"})
    theirs = _submit(other_api, "Another tenant.")

    assert _listed(_changelist(admin_client, status__exact="succeeded")) == {done}
    assert _listed(_changelist(admin_client, status__exact="queued")) == {waiting, theirs}
    assert _listed(_changelist(admin_client, tenant__id__exact=str(tenant.id))) == {done, waiting}
    assert _listed(_changelist(admin_client, engine__exact="tone", kind__exact="tts")) == {done, waiting, theirs}
    assert _listed(_changelist(admin_client, kind__exact="talking_head")) == set()
    assert _listed(_changelist(admin_client, q=waiting)) == {waiting}  # the id, with hyphens
    assert _listed(_changelist(admin_client, q=waiting.replace("-", "").upper())) == {waiting}
    assert _listed(_changelist(admin_client, q="b-2002")) == {waiting}  # metadata text
    assert (
        _listed(_changelist(admin_client, created_at__gte="2000-01-01 00:00:00+00:00", created_at__lt="2000-01-02 00:00:00+00:00")) == set()
    )
    page = _changelist(admin_client)
    assert '<progress class="mynah-progress mynah-succeeded" max="100" value="100"' in page
    assert '<progress class="mynah-progress mynah-queued" max="100" value="0"' in page


def test_the_job_page_plays_the_result_and_shows_input_and_error_escaped(admin_client, tenant, api, stub_broker):
    job_id = _submit(api, f"Play me back. {XSS}", metadata={"note": XSS})
    services.job_run(job_id=job_id)
    Job.objects.filter(id=job_id).update(error_message=f"earlier failure {XSS}")
    page = admin_client.get(f"/admin/jobs/job/{job_id}/change/").content.decode()
    assert XSS not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    player = re.search(r'<audio controls preload="none" src="([^"]+)">', page)
    assert player and player.group(1) == f"/admin/jobs/job/{job_id}/result/output/"
    audio = admin_client.get(player.group(1))
    assert audio.status_code == 200 and audio["Content-Type"] == "audio/wav"
    path = default_storage.path(Job.objects.get(id=job_id).result_key)
    samples, rate = decode_audio(path)
    assert b"".join(audio.streaming_content) == Path(path).read_bytes() and len(samples) / rate > 0.2


def test_a_video_result_gets_a_video_player(admin_client, tenant):
    job = Job.objects.create(tenant=tenant, kind="talking_head", engine="builtin", status="succeeded", progress=100)
    key = default_storage.save(f"tenants/{tenant.id}/jobs/{job.id}/output-1.mp4", ContentFile(b"\0\0\0\x18ftypmp42"))
    Job.objects.filter(id=job.id).update(result_key=key, result_content_type="video/mp4", result_size_bytes=12)
    page = admin_client.get(f"/admin/jobs/job/{job.id}/change/").content.decode()
    assert f'<video controls preload="none" src="/admin/jobs/job/{job.id}/result/output/">' in page
    served = admin_client.get(f"/admin/jobs/job/{job.id}/result/output/")
    assert served["Content-Type"] == "video/mp4"
    assert admin_client.get(f"/admin/jobs/job/{job.id}/result/nothing/").status_code == 404
    Job.objects.filter(id=job.id).update(status="expired")
    assert admin_client.get(f"/admin/jobs/job/{job.id}/result/output/").status_code == 404


def _act(admin_client, action: str, *job_ids: str):
    return admin_client.post("/admin/jobs/job/", {"action": action, "_selected_action": list(job_ids)}, follow=True)


def test_retry_cancel_and_requeue_act_through_the_services_and_are_audited(admin_client, tenant, api, stub_broker):
    failed = _submit(api, "Try again later.")
    Job.objects.filter(id=failed).update(status="failed", attempts=3, error_code="engine_error", error_message="boom")
    queued = _submit(api, "Cancel me.")
    running = _submit(api, "Stuck somewhere.")
    Job.objects.filter(id=running).update(status="running", attempts=1)
    stub_broker.flush_all()

    _act(admin_client, "rerun_selected", failed)
    job = Job.objects.get(id=failed)
    assert (job.status, job.attempts, job.error_code) == ("queued", 0, "")
    services.job_run(job_id=failed)  # the retried job really runs
    assert Job.objects.get(id=failed).status == "succeeded"

    _act(admin_client, "cancel_selected", queued)
    assert Job.objects.get(id=queued).status == "canceled"

    _act(admin_client, "requeue_selected", running)
    job = Job.objects.get(id=running)
    assert (job.status, job.stage) == ("queued", "requeued")
    sent = [stub_broker.queues[name].qsize() for name in ("tts", "tts-high")]
    assert sum(sent) >= 1
    # The worker that had it can no longer write progress (it stops).
    with pytest.raises(Canceled):
        services.job_progress(job=Job(id=job.id, attempts=1, tenant=tenant), percent=50, stage="late")

    actions = set(AuditEvent.objects.filter(actor__startswith="staff:").values_list("action", flat=True))
    assert {"job.rerun", "job.cancel", "job.requeue"} <= actions


def test_an_action_on_a_job_in_the_wrong_state_changes_nothing_and_says_why(admin_client, tenant, api, stub_broker):
    job_id = _submit(api, "Done already.")
    services.job_run(job_id=job_id)
    page = _act(admin_client, "cancel_selected", job_id).content.decode()
    assert "only queued or running jobs can be canceled" in page
    page = _act(admin_client, "rerun_selected", job_id).content.decode()
    assert "only failed or canceled jobs can be run again" in page
    assert Job.objects.get(id=job_id).status == "succeeded"


def test_tenant_limits_are_editable_and_usage_is_shown(admin_client, tenant, api, stub_broker):
    services.job_run(job_id=_submit(api, "Some usage to count."))
    response = admin_client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        {"slug": tenant.slug, "name": "Acme", "is_active": "on", "max_in_flight": "3", "result_retention_days": "7"},
    )
    assert response.status_code == 302, response.content[:3000]
    tenant.refresh_from_db()
    assert (tenant.max_in_flight, tenant.result_retention_days) == (3, 7)
    page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert "<th>max_in_flight</th><td>3</td>" in page and "<th>result_retention_days</th><td>7</td>" in page
    usage = re.search(r"<tr><td>(\d{4}-\d\d)</td><td>([\d.]+)</td><td>[\d.]+</td><td>(\d+)</td>", page)
    assert usage and float(usage.group(2)) > 0 and usage.group(3) == "1"
    assert Tenant.objects.filter(name="Acme").exists()


def test_a_new_api_key_is_shown_once_works_and_can_be_revoked(admin_client, tenant, redis_url):
    response = admin_client.post("/admin/tenants/apikey/add/", {"tenant": tenant.pk, "name": "from-admin"}, follow=True)
    shown = re.search(r"The API key is: (\S+) ", response.content.decode())
    assert shown, response.content.decode()[:3000]
    raw_key = shown.group(1)
    api_key = ApiKey.objects.get(name="from-admin")
    assert raw_key not in str(ApiKey.objects.filter(pk=api_key.pk).values())  # only a hash is stored
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/v1/jobs").status_code == 200
    page = admin_client.get(f"/admin/tenants/apikey/{api_key.pk}/change/").content.decode()
    assert raw_key not in page  # never shown again

    admin_client.post("/admin/tenants/apikey/", {"action": "revoke_selected", "_selected_action": [api_key.pk]})
    assert client.get("/v1/jobs").status_code == 401


def test_user_text_is_escaped_on_every_changelist(admin_client, tenant, api, stub_broker):
    from voices.models import VoicePrompt

    Tenant.objects.filter(pk=tenant.pk).update(name=XSS)
    job_id = _submit(api, "Escaped.")
    Job.objects.filter(id=job_id).update(status="failed", error_code="engine_error", error_message=XSS)
    voice = VoicePrompt.objects.create(tenant=tenant, name=XSS, transcript=XSS, upload_key="", upload_size_bytes=1)
    urls = (
        "/admin/tenants/tenant/",
        "/admin/jobs/job/",
        f"/admin/jobs/job/{job_id}/change/",
        "/admin/audit/auditevent/",
        "/admin/voices/voiceprompt/",
        f"/admin/voices/voiceprompt/{voice.id}/change/",
    )
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert XSS not in response.content.decode(), url
