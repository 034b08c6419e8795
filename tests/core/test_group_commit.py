"""Group commit (core/group_commit.py) on real connections: units queued
while the committer is busy share one transaction, and each unit still gets
its own outcome, as if it had run in a transaction of its own."""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection, connections, transaction

from core import group_commit
from core.errors import ApplicationError
from core.group_commit import GroupCommitter, in_shared_transaction
from tenants.models import Tenant, UsagePeriod

pytestmark = pytest.mark.django_db(transaction=True)


def _in_own_connection(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    finally:
        connections.close_all()


def _new_tenant(slug: str) -> Tenant:
    return Tenant.objects.create(slug=slug)


def _one_batch(committer: GroupCommitter, works: list) -> list:
    """Run ``works`` from one thread each, queued while the committer is
    busy with a unit that waits for them all, so they make one batch. The
    outcome of each: its result, or the exception raised in its thread."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        assert release.wait(timeout=10)

    def outcome(work):
        try:
            return committer.run(work)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(works) + 1) as pool:
        holder = pool.submit(_in_own_connection, committer.run, hold)
        assert started.wait(timeout=10)
        futures = [pool.submit(_in_own_connection, outcome, work) for work in works]
        while committer._queue.qsize() < len(works):  # all queued behind the holder
            threading.Event().wait(0.005)
        batches_before = committer.batches
        release.set()
        holder.result(timeout=10)
        outcomes = [future.result(timeout=10) for future in futures]
    assert committer.batches == batches_before + 1, "the queued units ran as one batch"
    return outcomes


def test_units_queued_while_the_committer_is_busy_commit_together():
    committer = GroupCommitter()
    outcomes = _one_batch(committer, [lambda i=i: _new_tenant(f"batched-{i}").slug for i in range(5)])
    assert outcomes == [f"batched-{i}" for i in range(5)]
    assert set(Tenant.objects.filter(slug__startswith="batched-").values_list("slug", flat=True)) == set(outcomes)


def test_a_failing_unit_rolls_back_only_itself_and_its_error_reaches_its_caller():
    committer = GroupCommitter()
    refusal = ApplicationError("quota_exceeded", "no", status=402)
    ran_after_commit: list[str] = []

    def refused():
        _new_tenant("refused")
        transaction.on_commit(lambda: ran_after_commit.append("refused"))
        raise refusal

    def accepted(slug):
        _new_tenant(slug)
        transaction.on_commit(lambda: ran_after_commit.append(slug))
        return slug

    outcomes = _one_batch(committer, [lambda: accepted("first"), refused, lambda: accepted("last")])
    assert outcomes == ["first", refusal, "last"]
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"first", "last"}
    assert sorted(ran_after_commit) == ["first", "last"]


def _counting(runs: Counter, name: str, work):
    def counted():
        runs[name] += 1
        return work()

    return counted


def _accepted(slug: str, ran_after_commit: list[str]) -> str:
    _new_tenant(slug)
    transaction.on_commit(lambda: ran_after_commit.append(slug))
    return slug


def test_a_refusal_before_any_write_costs_the_others_nothing():
    """The usual refusal (a quota, a conflict) comes before the unit writes:
    it leaves nothing to roll back, so the batch commits as it ran, with the
    refusing unit's callbacks dropped. (On SQLite a unit has no savepoint:
    the connection's count of changed rows shows that it wrote nothing.)"""
    committer = GroupCommitter()
    refusal = ApplicationError("too_many_active_jobs", "no", status=429)
    runs: Counter[str] = Counter()
    ran_after_commit: list[str] = []

    def refused():
        Tenant.objects.filter(slug="first").exists()  # it reads, sees the unit before it, writes nothing
        transaction.on_commit(lambda: ran_after_commit.append("refused"))
        raise refusal

    works = [
        _counting(runs, "first", lambda: _accepted("first", ran_after_commit)),
        _counting(runs, "refused", refused),
        _counting(runs, "last", lambda: _accepted("last", ran_after_commit)),
    ]
    outcomes = _one_batch(committer, works)
    assert outcomes == ["first", refusal, "last"]
    assert runs == {"first": 1, "refused": 1, "last": 1}, "nothing ran twice"
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"first", "last"}
    assert sorted(ran_after_commit) == ["first", "last"]


def test_a_unit_that_wrote_before_it_failed_is_undone_and_the_others_kept():
    """SQLite: only a rollback undoes a write, so the batch runs again one
    unit per transaction; Postgres rolls back the unit's savepoint."""
    committer = GroupCommitter()
    runs: Counter[str] = Counter()
    ran_after_commit: list[str] = []

    def wrote_then_failed():
        _new_tenant("half-done")
        raise ApplicationError("service_unavailable", "no", status=503)

    works = [
        _counting(runs, "first", lambda: _accepted("first", ran_after_commit)),
        _counting(runs, "failed", wrote_then_failed),
        _counting(runs, "last", lambda: _accepted("last", ran_after_commit)),
    ]
    outcomes = _one_batch(committer, works)
    assert outcomes[0] == "first" and outcomes[2] == "last"
    assert isinstance(outcomes[1], ApplicationError)
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"first", "last"}
    assert sorted(ran_after_commit) == ["first", "last"]
    again = 2 if connection.vendor == "sqlite" else 1  # the shared pass stopped at the failure
    assert runs == {"first": again, "failed": again, "last": 1}


def test_a_unit_whose_save_fails_fails_alone():
    """A duplicate key in an ORM save, which marks the transaction for
    rollback: the others' work stands (on SQLite the batch runs again one
    unit per transaction; Postgres rolls back the unit's savepoint)."""
    committer = GroupCommitter()
    _new_tenant("taken")
    runs: Counter[str] = Counter()
    ran_after_commit: list[str] = []
    works = [
        _counting(runs, "first", lambda: _accepted("first", ran_after_commit)),
        _counting(runs, "duplicate", lambda: _new_tenant("taken")),
        _counting(runs, "last", lambda: _accepted("last", ran_after_commit)),
    ]
    outcomes = _one_batch(committer, works)
    assert outcomes[0] == "first" and outcomes[2] == "last"
    assert isinstance(outcomes[1], IntegrityError)
    assert runs["last"] == 1
    assert sorted(Tenant.objects.values_list("slug", flat=True)) == ["first", "last", "taken"]
    assert sorted(ran_after_commit) == ["first", "last"]


def test_a_unit_that_breaks_the_commit_fails_alone():
    """A foreign key is checked at COMMIT: the batch fails as a whole, and
    runs again one unit per transaction."""
    committer = GroupCommitter()
    tenant = _new_tenant("existing")

    def dangling():
        UsagePeriod.objects.create(tenant_id=uuid.uuid4(), period="2026-12")

    outcomes = _one_batch(committer, [lambda: _new_tenant("before").slug, dangling, lambda: _new_tenant("after").slug])
    assert outcomes[0] == "before" and outcomes[2] == "after"
    assert isinstance(outcomes[1], IntegrityError)
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"existing", "before", "after"}
    assert not UsagePeriod.objects.exists()
    assert tenant.pk


def test_a_unit_runs_in_its_callers_context():
    committer = GroupCommitter()
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")

    def as_request(rid):
        request_id.set(rid)
        return committer.run(request_id.get)

    with ThreadPoolExecutor(max_workers=4) as pool:
        seen = list(pool.map(lambda rid: _in_own_connection(as_request, rid), ["a", "b", "c", "d"]))
    assert seen == ["a", "b", "c", "d"]


def test_the_answer_waits_for_the_commit(settings):
    """The caller gets its result only once the row is visible to another
    connection (a 202 means the job is durable)."""
    settings.DB_GROUP_COMMIT = True

    def create_and_check_elsewhere():
        tenant = in_shared_transaction(lambda: _new_tenant("durable"))
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(_in_own_connection, lambda: Tenant.objects.filter(pk=tenant.pk).exists()).result(timeout=10)

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_in_own_connection, create_and_check_elsewhere).result(timeout=10)
    assert group_commit._committer.units >= 1


def test_inside_a_transaction_the_work_runs_inline_and_rolls_back_with_it(settings):
    settings.DB_GROUP_COMMIT = True
    units_before = group_commit._committer.units

    def caller_fails() -> None:
        with transaction.atomic():
            in_shared_transaction(lambda: _new_tenant("inline"))
            assert Tenant.objects.filter(slug="inline").exists()  # the caller sees its own write
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        caller_fails()
    assert not Tenant.objects.filter(slug="inline").exists()
    assert group_commit._committer.units == units_before
