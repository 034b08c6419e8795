"""Submissions under concurrency, on real connections (one per thread):
quotas stay exact, identical requests coalesce, and a worker's writes never
wait on a submission's turn (on Postgres that wait closed deadlocks)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections, transaction

from core.errors import ApplicationError
from jobs import services
from jobs.models import Job
from jobs.services import TtsParams
from jobs.services import submit as submit_module
from tenants.models import Tenant, UsagePeriod
from tenants.services import usage_record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("stub_broker", "redis_url")]


def _submit(tenant: Tenant, text: str, *, use_cache: bool = False) -> Job:
    params = TtsParams(text=text, language="en", engine="tone", format="wav", speed=1.0)
    return services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None, use_cache=use_cache)


def _in_own_connection(function, *args, **kwargs):
    """Run in this thread's own database connection, closed afterwards."""
    try:
        return function(*args, **kwargs)
    finally:
        connections.close_all()


def _worker_finishes_a_job(job_id, tenant_id) -> None:
    """What a worker does when a job ends: update its row, then count the
    month's usage (the month's first job INSERTs its UsagePeriod, whose
    foreign key check locks the tenant row in KEY SHARE mode)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # waiting longer than this is the bug
                cursor.execute("SET LOCAL lock_timeout = '3s'")
        Job.objects.filter(id=job_id).update(status=Job.Status.SUCCEEDED)
        usage_record(tenant_id=tenant_id, audio_seconds=1.0, jobs=1)


def test_a_workers_first_usage_insert_never_waits_on_a_submissions_turn(tenant, monkeypatch):
    """The deadlock of the issue, made to happen: a submission holds its
    tenant's turn while a worker records the tenant's first usage of the
    month. With the turn taken FOR UPDATE, the worker's foreign key check
    waited on it (then, with other submissions committing, Postgres found a
    cycle and answered 503s); FOR NO KEY UPDATE does not conflict with it."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: Postgres (SQLite serializes whole transactions)")
    running = _submit(tenant, "a job that is about to finish")
    assert not UsagePeriod.objects.filter(tenant=tenant).exists()
    holding, worker_done = threading.Event(), threading.Event()
    real_check = submit_module._check_quotas

    def check_then_hold(**kwargs):
        real_check(**kwargs)  # the tenant's turn is held from here to the commit
        holding.set()
        worker_done.wait(timeout=10)

    monkeypatch.setattr(submit_module, "_check_quotas", check_then_hold)
    with ThreadPoolExecutor(max_workers=2) as pool:
        submission = pool.submit(_in_own_connection, _submit, tenant, "a new submission")
        assert holding.wait(timeout=10)
        started = time.monotonic()
        worker = pool.submit(_in_own_connection, _worker_finishes_a_job, running.id, tenant.pk)
        try:
            worker.result(timeout=15)  # a lock timeout (the bug) raises here
            worker_s = time.monotonic() - started
        finally:
            worker_done.set()
        submitted = submission.result(timeout=15)
    assert worker_s < 2.0, worker_s
    assert Job.objects.get(id=submitted.id).status == Job.Status.QUEUED
    assert UsagePeriod.objects.get(tenant=tenant).jobs_succeeded == 1


def test_the_active_jobs_limit_is_exact_under_concurrent_submissions(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(max_active_jobs=5)
    tenant.refresh_from_db()
    start = threading.Barrier(12)

    def submit(index: int) -> str:
        start.wait(timeout=10)
        try:
            _submit(tenant, f"concurrent submission {index}")
        except ApplicationError as error:
            return error.code
        return "accepted"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = Counter(pool.map(lambda index: _in_own_connection(submit, index), range(12)))
    assert outcomes == {"accepted": 5, "too_many_active_jobs": 7}
    assert Job.objects.filter(tenant=tenant).count() == 5


def test_identical_concurrent_submissions_make_one_job_the_others_join(tenant):
    start = threading.Barrier(8)

    def submit(_: int) -> Job:
        start.wait(timeout=10)
        return _submit(tenant, "the same words, at the same moment", use_cache=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = list(pool.map(lambda index: _in_own_connection(submit, index), range(8)))
    sources = [job for job in jobs if job.dedup_of_id is None]
    assert len(sources) == 1
    assert {job.dedup_of_id for job in jobs if job not in sources} == {sources[0].id}


def test_a_new_tenants_first_burst_while_its_first_jobs_finish_loses_nothing(tenant):
    """Submissions and workers' ends of jobs, interleaved on one brand-new
    tenant (its first UsagePeriod is inserted meanwhile): every submission is
    accepted and every worker transaction commits (no deadlock, no lock
    timeout)."""
    first = [_submit(tenant, f"first job {index}") for index in range(6)]
    start = threading.Barrier(10)

    def submit(index: int) -> Job:
        start.wait(timeout=10)
        return _submit(tenant, f"burst {index}")

    def finish(job: Job) -> None:
        start.wait(timeout=10)
        _worker_finishes_a_job(job.id, tenant.pk)

    with ThreadPoolExecutor(max_workers=10) as pool:
        submissions = [pool.submit(_in_own_connection, submit, index) for index in range(4)]
        ends = [pool.submit(_in_own_connection, finish, job) for job in first]
        accepted = [future.result(timeout=30) for future in submissions]
        for future in ends:
            future.result(timeout=30)
    assert len({job.id for job in accepted}) == 4
    assert UsagePeriod.objects.get(tenant=tenant).jobs_succeeded == 6
