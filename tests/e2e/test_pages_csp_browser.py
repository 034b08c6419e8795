"""The server's pages under their Content-Security-Policy, in Chromium:
Swagger UI at /v1/docs renders the API's operations and expands one; the
admin login, index, a change list and the operations dashboard load; and no
page reports a single CSP violation (each is recorded by a
``securitypolicyviolation`` listener installed before any script runs, and
would also show as a console error). The dashboard's own behaviour under the
policy is tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from tests.support.browser import chromium_session

pytestmark = pytest.mark.integration

USERNAME = "csp-staff"
PASSWORD = "correct-horse-battery-staple"

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


def _violations(page) -> list[str]:
    return page.evaluate("() => window.__cspViolations")


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_superuser(username=USERNAME, email="csp@example.com", password=PASSWORD)


def test_swagger_ui_works_under_the_policy(live_server):
    with chromium_session(name="docs-csp") as browser:
        page = browser.page
        page.add_init_script(RECORD_VIOLATIONS)
        response = page.goto(live_server.url + "/v1/docs")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector(".opblock-summary", timeout=30_000)
        operations = page.locator(".opblock-summary-path").all_text_contents()
        assert "/v1/tts" in [text.replace("\u200b", "") for text in operations]
        page.locator(".opblock-summary").first.click()
        page.wait_for_selector(".opblock-body", timeout=10_000)
        browser.screenshot("docs-csp")
        assert _violations(page) == []
        assert browser.errors == []


def test_the_admin_and_the_dashboard_work_under_the_policy(live_server, staff_user, redis_url):
    with chromium_session(name="admin-csp") as browser:
        page = browser.page
        page.add_init_script(RECORD_VIOLATIONS)
        page.goto(live_server.url + "/admin/login/")
        assert _violations(page) == []
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("#login-form [type=submit]")
        page.wait_for_url(re.compile(r"/admin/$"))
        assert _violations(page) == []
        for path in ("/admin/jobs/job/", "/admin/tenants/tenant/add/", "/admin/dashboard/"):
            response = page.goto(live_server.url + path)
            assert response.status == 200, path
            assert response.headers["content-security-policy"].startswith("default-src 'self'"), path
            page.wait_for_load_state("networkidle")
            assert _violations(page) == [], path
        page.wait_for_selector('#ops-dashboard[data-ready="1"]', timeout=15_000)
        browser.screenshot("dashboard-csp")
        assert _violations(page) == []
        assert browser.errors == []
