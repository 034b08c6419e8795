"""Each app owns its repair and purge steps (registered in its AppConfig);
``manage.py repair`` and ``manage.py purge_expired`` run them all."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core import maintenance
from core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def steps(monkeypatch) -> dict:
    """The registry, restored after the test."""
    registered = dict(maintenance._steps)
    monkeypatch.setattr(maintenance, "_steps", registered)
    return registered


def _run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_each_app_registers_its_steps_in_the_order_the_commands_ran_them():
    repair = maintenance.steps(maintenance.REPAIR)
    assert [step.name for step in repair] == [
        "jobs.resend_unsent",
        "jobs.resend_abandoned",
        "jobs.stop_overdue",
        "webhooks.sweep",
        "voices.resend_stuck",
    ]
    purge = maintenance.steps(maintenance.PURGE)
    assert [step.name for step in purge] == ["jobs.retention", "webhooks.deliveries", "core.idempotency_records"]
    # Owned (and registered) by the app each step's name starts with.
    assert all(step.fn.__module__ == f"{step.name.split('.')[0]}.apps" for step in [*repair, *purge])


@pytest.mark.django_db(transaction=True)  # jobs_requeue_abandoned closes old connections
def test_repair_reports_every_step_and_reap_jobs_is_its_deprecated_alias(tenant, stub_broker):
    out, _ = _run("repair", "--unsent-after", "0")
    assert out.strip() == (
        "resent 0 unsent job(s); requeued 0 abandoned job(s); stopped 0 job(s) over their time limit; "
        "sent 0 due webhook deliveries; re-queued 0 voice analyses"
    )
    old_out, old_err = _run("reap_jobs", "--unsent-after", "0")
    assert old_out == out and "deprecated" in old_err and "repair" in old_err


@pytest.mark.django_db(transaction=True)
def test_a_failing_step_is_reported_and_the_others_still_run(steps, stub_broker):
    ran = []

    def broken(context):
        raise RuntimeError("the step's dependency is down")

    def after(context):
        ran.append(context)
        return maintenance.Outcome("after ran")

    maintenance.register(kind=maintenance.REPAIR, name="test.broken", fn=broken, order=1)
    maintenance.register(kind=maintenance.REPAIR, name="test.after", fn=after, order=999)
    out = StringIO()
    with pytest.raises(CommandError, match=r"test\.broken"):
        call_command("repair", stdout=out)
    assert out.getvalue().startswith("test.broken failed (RuntimeError); resent 0 unsent job(s)")
    assert out.getvalue().strip().endswith("; after ran")
    assert len(ran) == 1 and ran[0].options["unsent_after"] == 10.0


def test_the_jobs_repair_step_takes_the_new_name_of_resend_abandoned_when_it_exists(monkeypatch):
    """jobs.services renames jobs_requeue_abandoned to jobs_resend_abandoned
    in the jobs split; the step works with either."""
    from jobs import services

    monkeypatch.setattr(services, "jobs_resend_abandoned", lambda: 7, raising=False)
    (step,) = [step for step in maintenance.steps(maintenance.REPAIR) if step.name == "jobs.resend_abandoned"]
    assert step.fn(maintenance.Context(now=timezone.now())).summary == "requeued 7 abandoned job(s)"


def test_register_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown maintenance kind"):
        maintenance.register(kind="reap", name="x", fn=lambda context: maintenance.Outcome(""))


def _old_records(tenant) -> None:
    now = timezone.now()
    IdempotencyRecord.objects.create(tenant_id=tenant.pk, key="old", fingerprint="f", expires_at=now - timedelta(seconds=1))
    IdempotencyRecord.objects.create(tenant_id=tenant.pk, key="live", fingerprint="f", expires_at=now + timedelta(hours=1))


def _old_delivery(tenant, settings):
    from webhooks.models import Delivery

    delivery = Delivery.objects.create(
        tenant=tenant,
        url="https://example.com/hook",
        event_type="job.succeeded",
        payload={},
        status=Delivery.Status.SUCCEEDED,
        next_attempt_at=timezone.now(),
    )
    old = timezone.now() - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS + 1)
    Delivery.objects.filter(id=delivery.id).update(created_at=old)
    return delivery


def test_purge_expired_runs_every_apps_purge_step(tenant, settings):
    from webhooks.models import Delivery

    _old_records(tenant)
    _old_delivery(tenant, settings)

    out, _ = _run("purge_expired", "--dry-run")
    assert out.strip() == (
        "[dry run] expired 0 job(s), purged the inputs of 0 finished job(s), would delete 0 object(s) "
        "(kept 0 still shared by a cache hit) and 0 orphan object(s), would delete 1 webhook deliveries, "
        "would delete 1 idempotency records; 0 error(s)"
    )
    assert IdempotencyRecord.objects.count() == 2 and Delivery.objects.count() == 1

    out, _ = _run("purge_expired", "--no-orphans")
    assert "deleted 1 webhook deliveries, deleted 1 idempotency records; 0 error(s)" in out
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live"]
    assert not Delivery.objects.exists()


def test_the_jobs_purge_step_leaves_other_apps_records_to_their_own_steps(tenant, settings):
    from webhooks.models import Delivery

    _old_records(tenant)
    _old_delivery(tenant, settings)
    (jobs_step,) = [step for step in maintenance.steps(maintenance.PURGE) if step.name == "jobs.retention"]
    jobs_step.fn(maintenance.Context(now=timezone.now()))
    assert IdempotencyRecord.objects.count() == 2 and Delivery.objects.count() == 1


def test_purge_expired_fails_when_storage_refused_a_delete(steps):
    def refused(context):
        return maintenance.Outcome("deleted 0 widgets", keys=["tenants/x/widget"], errors=1)

    maintenance.register(kind=maintenance.PURGE, name="test.widgets", fn=refused)
    out = StringIO()
    with pytest.raises(CommandError, match="could not be deleted"):
        call_command("purge_expired", "--verbosity", "2", stdout=out)
    assert "deleted tenants/x/widget" in out.getvalue() and out.getvalue().strip().endswith("deleted 0 widgets; 1 error(s)")
