"""List parameters on every list endpoint: a ``limit`` or ``cursor`` the API
cannot honour is a 400 ``validation_error`` naming the field, never a silent
default (``limit=0`` used to mean 20, an unparsable cursor the whole list)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest

from jobs.models import Job

LISTS = ["/v1/jobs", "/v1/voices", "/v1/webhook-endpoints", "/v1/webhook-deliveries"]


def _field_error(response, field: str) -> list[dict]:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"], error
    return error["details"]["fields"][field]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["0", "-1", "abc", "", "101", "1e3", "2.5"])
def test_a_bad_limit_is_refused_naming_the_field(api, path, limit):
    _field_error(api.get(path, {"limit": limit}), "limit")


@pytest.mark.parametrize("path", LISTS)
def test_limit_between_1_and_100_is_honoured(api, path):
    for limit in ("1", "100"):
        response = api.get(path, {"limit": limit})
        assert response.status_code == 200, response.content


def _cursor(**tokens: str) -> str:
    return base64.b64encode(urlencode(tokens).encode()).decode()


AWARE = "2026-01-02 03:04:05.678901+00:00"
BAD_CURSORS = [
    "",
    "!!garbage!!",
    "abc",  # not base64
    "YWJj",  # base64 of "abc": decoded, it used to mean the start of the list
    _cursor(),  # the empty cursor
    _cursor(p="notadate"),
    _cursor(p="2026-13-45T99:99:99"),
    _cursor(p="2026-01-02 03:04:05"),  # naive: never issued
    _cursor(o="abc", p=AWARE),
    _cursor(o="-1", p=AWARE),
    _cursor(o="1000000", p=AWARE),
    _cursor(r="2", p=AWARE),
    _cursor(p=AWARE, x="1"),
    base64.b64encode(f"p={AWARE}&p={AWARE}".encode()).decode(),
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_cursor_this_api_did_not_issue_is_refused_naming_the_field(api, path, cursor):
    _field_error(api.get(path, {"cursor": cursor}), "cursor")


def test_limit_and_cursor_errors_are_reported_together(api):
    response = api.get("/v1/jobs", {"limit": "0", "cursor": "YWJj"})
    _field_error(response, "limit")
    _field_error(response, "cursor")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/webhook-endpoints"])
def test_issued_cursors_walk_the_list_both_ways(api, tenant, path):
    from tenants.models import ApiKey
    from webhooks.models import Endpoint

    key = ApiKey.objects.filter(tenant=tenant).first()
    for index in range(5):
        if path == "/v1/jobs":
            Job.objects.create(tenant=tenant, api_key=key, kind=Job.Kind.TTS, engine="tone", input={"text": str(index)})
        else:
            Endpoint.objects.create(tenant=tenant, url=f"https://example.com/{index}", secret="whsec_dGVzdA==")
    seen: list[str] = []
    page = api.get(path, {"limit": 2}).json()
    while True:
        seen += [item["id"] for item in page["results"]]
        if not page["next"]:
            break
        last = page
        page = api.get(page["next"]).json()
    assert len(seen) == len(set(seen)) == 5
    back = api.get(last["next"]).json()
    previous = api.get(back["previous"]).json()
    assert [item["id"] for item in previous["results"]] == [item["id"] for item in last["results"]]
