from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.urls import reverse

from audit.models import AuditEvent
from jobs.models import Job
from tenants.services import api_key_create


def _assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response["X-Request-ID"]
    return body["error"]


def _submit(api, **payload):
    return api.post("/v1/tts", {"text": "Hello world.", **payload}, format="json")


def test_submit_returns_202_with_location_and_job_body(api, tenant):
    response = _submit(api, metadata={"order": 42}, format="mp3")
    assert response.status_code == 202
    body = response.json()
    assert response["Location"] == f"/v1/jobs/{body['id']}"
    assert set(body) == {
        "id",
        "kind",
        "status",
        "priority",
        "engine",
        "progress",
        "stage",
        "created_at",
        "started_at",
        "finished_at",
        "attempts",
        "input",
        "result",
        "audio_stream_url",
        "error",
        "cache_hit",
        "metadata",
    }
    assert body["audio_stream_url"] == f"http://testserver/v1/jobs/{body['id']}/audio-stream"
    assert body["kind"] == "tts" and body["status"] == "queued" and body["progress"] == 0
    assert body["engine"] == "piper" and body["input"]["language"] == "en" and body["input"]["format"] == "mp3"
    assert body["metadata"] == {"order": 42} and body["result"] is None and body["cache_hit"] is False
    job = Job.objects.get(id=body["id"])
    assert job.tenant == tenant
    event = AuditEvent.objects.get(action="job.create", target_id=str(job.id))
    assert event.tenant == tenant and event.actor.startswith("api_key:") and event.ip == "127.0.0.1"
    assert event.request_id == response["X-Request-ID"]


def test_engine_defaults_by_language(api):
    assert _submit(api, language="cmn").json()["engine"] == "espeak"
    assert _submit(api, language="en-US").json()["engine"] == "piper"
    assert _submit(api, language="en", engine="espeak").json()["engine"] == "espeak"


def test_enqueue_happens_on_commit(api, stub_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job_id = _submit(api).json()["id"]
    assert len(callbacks) == 1
    messages = stub_broker.queues["tts"].queue
    assert [m for m in (json.loads(raw) for raw in list(messages)) if m["args"] == [job_id]]
    assert Job.objects.get(id=job_id).enqueued_at is not None


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"text": ""}, "validation_error", "text"),
        ({"text": "   "}, "validation_error", "text"),
        ({}, "validation_error", "text"),
        ({"text": 123}, "validation_error", "text"),
        ({"text": ["a"]}, "validation_error", "text"),
        ({"text": "hi\x00there"}, "validation_error", "text"),
        ({"text": "hi", "speed": "fast"}, "validation_error", "speed"),
        ({"text": "hi", "speed": True}, "validation_error", "speed"),
        ({"text": "hi", "speed": 5}, "validation_error", "speed"),
        ({"text": "hi", "format": "opus"}, "validation_error", "format"),  # OpenAI's name; ours is "ogg"
        ({"text": "hi", "metadata": "x"}, "validation_error", "metadata"),
        ({"text": "hi", "metadata": {str(i): i for i in range(40)}}, "validation_error", "metadata"),
        ({"text": "hi", "langauge": "en"}, "validation_error", "langauge"),
        ({"text": "hi", "language": 7}, "validation_error", "language"),
    ],
)
def test_invalid_fields_are_400_with_field_details(api, payload, code, field):
    error = _assert_error(api.post("/v1/tts", payload, format="json"), 400, code)
    assert field in error["details"]["fields"]
    assert Job.objects.count() == 0


def test_text_length_limit(api):
    limit = settings.TTS_MAX_TEXT_CHARS
    assert _submit(api, text="a" * limit).status_code == 202
    error = _assert_error(_submit(api, text="a" * (limit + 1)), 400, "validation_error")
    assert error["details"]["fields"]["text"][0]["code"] == "max_length"


def test_unknown_language_and_engine_have_their_own_codes(api):
    error = _assert_error(_submit(api, language="klingon"), 400, "unsupported_language")
    assert error["details"]["language"] == "klingon"
    error = _assert_error(_submit(api, engine="nope"), 400, "unknown_engine")
    assert "piper" in error["details"]["engines"]
    _assert_error(_submit(api, engine="piper", language="cmn"), 400, "unsupported_language")


def test_malformed_bodies(api):
    _assert_error(api.post("/v1/tts", "{not json", content_type="application/json"), 400, "malformed_request")
    _assert_error(api.post("/v1/tts", "[1, 2]", content_type="application/json"), 400, "malformed_request")
    _assert_error(api.post("/v1/tts", '{"text": NaN}', content_type="application/json"), 400, "malformed_request")
    _assert_error(api.post("/v1/tts", b"\xff\xfe", content_type="application/json"), 400, "malformed_request")
    _assert_error(api.post("/v1/tts", "text=hi", content_type="text/plain"), 415, "unsupported_media_type")


def test_oversized_body_is_413_before_parsing(api):
    big = json.dumps({"text": "a" * (settings.MAX_JSON_BODY_BYTES + 10)})
    error = _assert_error(api.post("/v1/tts", big, content_type="application/json"), 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == settings.MAX_JSON_BODY_BYTES


def test_wrong_method_and_unknown_route(api):
    _assert_error(api.get("/v1/tts"), 405, "method_not_allowed")
    _assert_error(api.get("/v1/nothing-here"), 404, "not_found")


def test_detail_and_cross_tenant_isolation(api, other_api):
    job_id = _submit(api).json()["id"]
    assert api.get(f"/v1/jobs/{job_id}").json()["id"] == job_id
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
        _assert_error(other_api.get(path), 404, "not_found")
    assert other_api.get("/v1/jobs").json()["results"] == []
    _assert_error(api.get("/v1/jobs/not-a-uuid"), 404, "not_found")
    _assert_error(api.get("/v1/jobs/00000000-0000-0000-0000-000000000000"), 404, "not_found")


def test_list_is_newest_first_with_cursor_pagination_and_filters(api, tenant):
    ids = [_submit(api, text=f"Job {i}.").json()["id"] for i in range(5)]
    Job.objects.filter(id=ids[0]).update(status=Job.Status.SUCCEEDED)
    page = api.get("/v1/jobs", {"limit": 2}).json()
    assert [job["id"] for job in page["results"]] == ids[::-1][:2]
    seen = [job["id"] for job in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [job["id"] for job in page["results"]]
    assert seen == ids[::-1]
    assert [job["id"] for job in api.get("/v1/jobs", {"status": "succeeded"}).json()["results"]] == [ids[0]]
    assert len(api.get("/v1/jobs", {"kind": "tts"}).json()["results"]) == 5
    assert api.get("/v1/jobs", {"kind": "talking_head"}).json()["results"] == []
    error = _assert_error(api.get("/v1/jobs", {"status": "done"}), 400, "validation_error")
    assert "status" in error["details"]["fields"]


def test_result_before_success_is_409_and_after_expiry_410(api):
    job_id = _submit(api).json()["id"]
    error = _assert_error(api.get(f"/v1/jobs/{job_id}/result"), 409, "result_not_ready")
    assert error["details"]["status"] == "queued"
    Job.objects.filter(id=job_id).update(status=Job.Status.EXPIRED)
    _assert_error(api.get(f"/v1/jobs/{job_id}/result"), 410, "result_expired")


def test_every_response_has_a_request_id_and_echoes_a_sane_one(api):
    assert len(api.get("/v1/jobs")["X-Request-ID"]) == 32
    assert api.get("/v1/jobs", HTTP_X_REQUEST_ID="trace-123")["X-Request-ID"] == "trace-123"
    assert api.get("/v1/jobs", HTTP_X_REQUEST_ID="bad id\n")["X-Request-ID"] != "bad id\n"
    assert api.get("/healthz")["X-Request-ID"]
    assert api.get("/v1/missing")["X-Request-ID"]


def test_health_endpoints_need_no_key_and_readiness_names_the_failing_part(client, db, settings):
    from core.redis_server import free_port

    assert client.get("/healthz").json() == {"status": "ok"}
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    error = _assert_error(client.get("/readyz"), 503, "service_unavailable")
    assert error["details"]["failing"] == {"redis": "ConnectionError"}


def test_keys_of_one_tenant_share_its_jobs(api, tenant):
    _, raw = api_key_create(tenant=tenant, name="second")
    job_id = _submit(api).json()["id"]
    from rest_framework.test import APIClient

    second = APIClient()
    second.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert second.get(reverse("jobs:detail", args=[job_id])).status_code == 200


def test_admin_lists_jobs_and_escapes_user_text(admin_client, api):
    _submit(api, text="<script>alert(1)</script> hello.")
    response = admin_client.get("/admin/jobs/job/")
    assert response.status_code == 200
    assert b"tts" in response.content
    assert admin_client.get("/admin/django_dramatiq/task/").status_code == 404
    job = Job.objects.get()
    detail = admin_client.get(f"/admin/jobs/job/{job.id}/change/")
    assert detail.status_code == 200
    assert b"<script>alert(1)</script>" not in detail.content
    assert b"&lt;script&gt;" in detail.content


@pytest.mark.parametrize(
    "body",
    [
        '{"text": "hi", "metadata": {"a": "\\ud800"}}',
        '{"text": "hi", "metadata": {"\\ud800": 1}}',
        '{"text": "hi", "metadata": {"a": "nul\\u0000"}}',
        '{"text": "hi", "metadata": {"a": 1e999}}',
        '{"text": "hi", "metadata": {"a": [1, {"b": "\\u0007"}]}}',
    ],
)
def test_hostile_metadata_is_400_not_500(api, body):
    error = _assert_error(api.post("/v1/tts", body, content_type="application/json"), 400, "validation_error")
    assert "metadata" in error["details"]["fields"]
    assert Job.objects.count() == 0


def test_deeply_nested_json_is_400(api):
    body = '{"text": "hi", "metadata": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    _assert_error(api.post("/v1/tts", body, content_type="application/json"), 400, "malformed_request")
    # Under the depth where Python's decoder gives out, the checks after it recursed
    # too: metadata 500 levels deep was a 500. Now the reader refuses it.
    for depth in (100, 500, 900, 950, 990):
        for field in ("metadata", "webhook_events"):
            body = '{"text": "hi", "' + field + '": {"a": ' + "[" * depth + "]" * depth + "}}"
            _assert_error(api.post("/v1/tts", body, content_type="application/json"), 400, "malformed_request")
    # Metadata may nest 16 levels; deeper is a field error.
    deep = '{"text": "hi", "metadata": ' + '{"a":' * 17 + "1" + "}" * 17 + "}"
    error = _assert_error(api.post("/v1/tts", deep, content_type="application/json"), 400, "validation_error")
    assert error["details"]["fields"]["metadata"][0]["code"] == "too_deep"
    assert Job.objects.count() == 0


def test_webhook_events_without_a_webhook_url_are_refused(api):
    error = _assert_error(_submit(api, webhook_events=["job.succeeded"]), 400, "validation_error")
    assert error["details"]["fields"]["webhook_events"][0]["code"] == "requires_webhook_url"
    assert Job.objects.count() == 0


def test_tampered_cursor_is_400_naming_the_field_not_500(api):
    import base64
    from urllib.parse import urlencode

    for position in ("notadate", "2026-13-45T99:99:99"):
        cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
        error = _assert_error(api.get("/v1/jobs", {"cursor": cursor}), 400, "validation_error")
        assert "cursor" in error["details"]["fields"]
    error = _assert_error(api.get("/v1/jobs", {"cursor": "!!garbage!!"}), 400, "validation_error")
    assert "cursor" in error["details"]["fields"]
