"""Brute-force protection of /admin/login/ (django-axes): real POSTs of the
admin's login form through Django's test client, locking by address and by
username, the answer, the audit event, and the end of the cool-off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent

PASSWORD = "correct-horse-battery-staple"
LIMIT = 5


@pytest.fixture
def staff(db):
    users = get_user_model()
    return (
        users.objects.create_superuser("ops", "ops@example.com", PASSWORD),
        users.objects.create_superuser("other-ops", "other@example.com", PASSWORD),
    )


def _login(username: str, password: str, address: str) -> object:
    client = Client(REMOTE_ADDR=address)
    client.get("/admin/login/")  # the CSRF cookie, as a browser gets it
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"].value, "next": "/admin/"},
    )


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_address_and_the_username(staff, settings):
    assert settings.AXES_FAILURE_LIMIT == LIMIT
    attacker = "203.0.113.10"
    statuses = [_login("ops", f"wrong-{n}", attacker).status_code for n in range(LIMIT - 1)]
    assert statuses == [200] * (LIMIT - 1)  # the form again, with its error

    locked = _login("ops", "wrong-again", attacker)
    assert locked.status_code == 429
    assert locked["Retry-After"] == str(settings.ADMIN_LOGIN_COOLOFF_S)
    assert b"Too many failed sign-in attempts" in locked.content
    assert 'name="password"' not in locked.content.decode()  # no form to keep guessing with

    # Locked by address: even the right password, even for another user.
    assert _login("ops", PASSWORD, attacker).status_code == 429
    assert _login("other-ops", PASSWORD, attacker).status_code == 429
    # Locked by username: the right password from elsewhere too.
    assert _login("ops", PASSWORD, "198.51.100.20").status_code == 429
    # Another user from another address signs in.
    response = _login("other-ops", PASSWORD, "198.51.100.21")
    assert response.status_code == 302 and response["Location"] == "/admin/"


@pytest.mark.django_db
def test_a_lockout_is_audited_once(staff):
    attacker = "203.0.113.11"
    for n in range(LIMIT + 4):  # the lockout, then attempts while locked
        _login("ops", f"wrong-{n}", attacker)
    events = AuditEvent.objects.filter(action="admin.login_locked_out")
    assert events.count() == 1
    event = events.get()
    assert event.ip == attacker and event.actor == "anonymous"
    assert event.metadata["username"] == "ops" and event.metadata["failures"] == LIMIT


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(staff, settings):
    attacker = "203.0.113.12"
    for n in range(LIMIT):
        _login("ops", f"wrong-{n}", attacker)
    assert _login("ops", PASSWORD, attacker).status_code == 429
    # The cool-off runs from the last attempt: move every attempt past it.
    past = timezone.now() - timedelta(seconds=settings.ADMIN_LOGIN_COOLOFF_S + 1)
    AccessAttempt.objects.update(attempt_time=past)
    response = _login("ops", PASSWORD, attacker)
    assert response.status_code == 302 and response["Location"] == "/admin/"


@pytest.mark.django_db
def test_a_success_resets_the_count(staff):
    address = "203.0.113.13"
    for n in range(LIMIT - 1):
        _login("ops", f"wrong-{n}", address)
    assert _login("ops", PASSWORD, address).status_code == 302
    statuses = [_login("ops", f"wrong-{n}", address).status_code for n in range(LIMIT - 1)]
    assert statuses == [200] * (LIMIT - 1)
