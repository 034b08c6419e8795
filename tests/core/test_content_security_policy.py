"""Content-Security-Policy on the pages the server renders: the API docs
(Swagger UI), the admin and the operations dashboard. That the pages still
work under it, in Chromium: tests/e2e/test_pages_csp_browser.py."""

from __future__ import annotations

import re

import pytest
from django.test import Client

STRICT = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}


def _directives(header: str) -> dict[str, str]:
    return {name: value.strip() for name, _, value in (part.strip().partition(" ") for part in header.split(";"))}


def _assert_strict(response) -> None:
    directives = _directives(response["Content-Security-Policy"])
    for name, value in STRICT.items():
        assert directives[name] == value, (name, directives)
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]


def _no_inline_code(html: str) -> None:
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], "inline script"
    assert "<style" not in html, "inline style block"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


@pytest.mark.django_db
def test_the_api_docs_have_a_strict_policy_and_no_inline_code():
    response = Client().get("/v1/docs")
    assert response.status_code == 200
    _assert_strict(response)
    html = response.content.decode()
    _no_inline_code(html)
    init = re.search(r'<script src="(/v1/docs\?[^"]*script[^"]*)"', html)
    assert init, "Swagger UI's init script is a file"
    script = Client().get(init.group(1).replace("&amp;", "&"))
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


@pytest.mark.django_db
def test_the_admin_login_has_the_policy():
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    _assert_strict(response)
    _no_inline_code(response.content.decode())


@pytest.mark.django_db
@pytest.mark.usefixtures("redis_url")
@pytest.mark.parametrize("path", ["/admin/", "/admin/jobs/job/", "/admin/tenants/tenant/", "/admin/dashboard/"])
def test_admin_pages_and_the_dashboard_have_the_policy(admin_client, path):
    response = admin_client.get(path)
    assert response.status_code == 200
    _assert_strict(response)
    _no_inline_code(response.content.decode())


@pytest.mark.django_db
def test_the_playground_keeps_its_own_stricter_policy():
    csp = Client().get("/playground")["Content-Security-Policy"]
    assert _directives(csp)["form-action"] == "'none'"


@pytest.mark.django_db
def test_json_answers_carry_no_page_policy():
    response = Client().get("/healthz")
    assert "Content-Security-Policy" not in response
