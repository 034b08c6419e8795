"""A failed voice_create cleans up its upload, and a cleanup that fails too
never hides the error that made the voice fail."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from voices import services
from voices.models import VoicePrompt

pytestmark = pytest.mark.django_db


class AuditDown(Exception):
    pass


def _create(tenant):
    upload = SimpleUploadedFile("a.wav", b"RIFF" + bytes(5000), content_type="audio/wav")
    return services.voice_create(tenant=tenant, upload=upload, name="V", language="en", transcript="", actor="test", ip=None)


@pytest.fixture
def audit_down(monkeypatch):
    def refuse(**kwargs):
        raise AuditDown("the audit table is unavailable")

    monkeypatch.setattr(services, "audit_record", refuse)


def _voice_files() -> set[Path]:
    return set(Path(default_storage.location).rglob("voices/*/*"))


def test_a_failed_create_deletes_its_upload(tenant, audit_down):
    before = _voice_files()
    with pytest.raises(AuditDown):
        _create(tenant)
    assert _voice_files() == before
    assert not VoicePrompt.objects.exists()


def test_a_cleanup_that_fails_is_logged_and_the_original_error_raised(tenant, audit_down, monkeypatch, caplog):
    def storage_refuses(key):
        raise OSError("storage is down too")

    monkeypatch.setattr(default_storage, "delete", storage_refuses)
    with caplog.at_level(logging.WARNING, logger="voices.services"), pytest.raises(AuditDown) as raised:
        _create(tenant)
    assert str(raised.value) == "the audit table is unavailable"
    (record,) = [r for r in caplog.records if "could not delete the upload" in r.getMessage()]
    assert isinstance(record.exc_info[1], OSError) and record.key.startswith(f"tenants/{tenant.id}/voices/")
    assert not VoicePrompt.objects.exists()
