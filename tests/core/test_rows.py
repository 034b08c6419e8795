"""row_insert (core/rows.py): the plain-SQL insert of the hot rows writes
what save() writes, and is used only for models where skipping save() and
its signals changes nothing."""

from __future__ import annotations

import uuid

import pytest
from django.db.models import Model
from django.db.models.signals import post_save, pre_save

from audit.models import AuditEvent
from audit.services import audit_record
from core.rows import row_insert
from jobs.models import Job

pytestmark = pytest.mark.django_db

ROW_INSERTED = (Job, AuditEvent)


def _stored(instance: Model) -> dict:
    fresh = type(instance).objects.get(pk=instance.pk)
    return {field.attname: getattr(fresh, field.attname) for field in type(instance)._meta.concrete_fields}


def test_a_row_inserted_reads_back_as_one_saved_by_the_orm(tenant):
    values = {
        "tenant": tenant,
        "kind": Job.Kind.TTS,
        "engine": "tone",
        "input": {"text": "Grüße, 世界", "speed": 1.25, "nested": [1, None, True]},
        "metadata": {"order": 42},
        "webhook_events": ["job.succeeded"],
        "dedup_key": "k" * 64,
        "cost": 2.5,
    }
    by_orm = Job.objects.create(id=uuid.uuid4(), **values)
    by_row = Job(id=uuid.uuid4(), **values)
    row_insert(by_row)
    assert by_row._state.adding is False and by_row._state.db == "default"
    assert by_row.created_at is not None  # auto_now_add, as save() sets it
    orm_row, inserted = _stored(by_orm), _stored(by_row)
    for name in ("id", "created_at"):
        orm_row.pop(name), inserted.pop(name)
    assert inserted == orm_row
    assert _stored(by_row)["created_at"] == by_row.created_at


def test_an_auto_primary_key_is_read_back(tenant):
    first = audit_record(action="job.create", actor="test", tenant=tenant, metadata={"kind": "tts"})
    second = audit_record(action="job.create", actor="test", tenant=tenant)
    assert isinstance(first.pk, int) and second.pk > first.pk
    assert AuditEvent.objects.get(pk=first.pk).metadata == {"kind": "tts"}
    assert AuditEvent.objects.get(pk=second.pk).created_at == second.created_at


@pytest.mark.parametrize("model", ROW_INSERTED)
def test_the_row_inserted_models_have_no_save_signals(model):
    """row_insert sends none: a receiver added for these models would be
    skipped silently, so this fails first."""
    assert not pre_save.has_listeners(model)
    assert not post_save.has_listeners(model)
