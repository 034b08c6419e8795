"""Service and actor tests: real engines, real storage, in-memory broker."""

from __future__ import annotations

import time
from datetime import timedelta

import dramatiq
import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import OperationalError
from django.utils import timezone

from engines.audio.io import decode_audio
from engines.errors import Canceled, PermanentEngineError, TransientEngineError
from harness.doubles import progress_patch
from jobs import services
from jobs.actors import tts_job_run
from jobs.models import Job
from jobs.services import JobRetry, TtsParams
from jobs.services import dispatch as dispatch_module
from jobs.services import run as run_module

# Job runs append to the job's event stream, in Redis.
pytestmark = pytest.mark.usefixtures("redis_url")


def _job(tenant, engine="espeak", text="Hello there. Testing one two three.", fmt="wav", **fields) -> Job:
    params = TtsParams(text=text, language="en", engine=engine, format=fmt, speed=1.0)
    job = services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None, use_cache=False)
    if fields:
        Job.objects.filter(id=job.id).update(**fields)
    return job


def _refresh(job: Job) -> Job:
    job.refresh_from_db()
    return job


def test_job_runs_to_success_and_stores_a_decodable_result(tenant):
    job = _job(tenant, fmt="ogg")
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert (job.status, job.progress, job.stage, job.attempts) == ("succeeded", 100, "done", 1)
    assert job.started_at <= job.finished_at
    assert job.result_key == f"tenants/{tenant.id}/jobs/{job.id}/output-1.ogg"
    assert job.result_content_type == "audio/ogg"
    with default_storage.open(job.result_key) as handle:
        data = handle.read()
    assert len(data) == job.result_size_bytes
    path = default_storage.path(job.result_key)
    audio, rate = decode_audio(path)
    assert abs(len(audio) / rate - job.result_duration_s) < 0.05
    assert job.result_expires_at > timezone.now() + timedelta(days=1)


@pytest.mark.parametrize(
    ("fmt", "content_type", "rate"), [("flac", "audio/flac", None), ("aac", "audio/aac", None), ("pcm", "audio/pcm", 24000)]
)
def test_stored_results_in_every_new_format_decode(tenant, fmt, content_type, rate):
    job = _job(tenant, fmt=fmt)
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert job.status == "succeeded" and job.result_content_type == content_type
    assert job.result_key.endswith(f".{fmt}")
    audio, decoded_rate = decode_audio(default_storage.path(job.result_key))
    assert rate is None or decoded_rate == rate
    assert job.result_duration_s > 1.0 and abs(len(audio) / decoded_rate - job.result_duration_s) < 0.1
    assert np.abs(audio).max() > 0.05  # speech, not silence


def test_progress_is_written_at_each_stage_and_chunk(tenant, monkeypatch):
    seen: list[tuple[int, str]] = []
    original = services.job_progress

    def spy(*, job, percent, stage):
        seen.append((percent, stage))
        original(job=job, percent=percent, stage=stage)

    progress_patch(monkeypatch, spy)
    text = " ".join(f"Sentence {i} of a longer text for chunking." for i in range(30))
    job = _job(tenant, text=text)
    services.job_run(job_id=str(job.id))
    stages = [stage for _, stage in seen]
    assert stages[0] == "synthesizing" and stages[-2:] == ["encoding", "storing"]
    assert stages.count("synthesizing") >= 4  # start + one per chunk
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


def test_a_redelivered_message_never_runs_a_job_twice(tenant):
    job = _job(tenant)
    services.job_run(job_id=str(job.id))
    first = _refresh(job)
    services.job_run(job_id=str(job.id))  # duplicate delivery: dropped, no error
    again = _refresh(job)
    assert again.attempts == 1 and again.finished_at == first.finished_at
    # And a job running on a live worker cannot be claimed by a second one.
    running = _job(tenant)
    assert services.job_claim(job_id=str(running.id)) is not None
    assert services.job_claim(job_id=str(running.id)) is None


def test_message_for_a_job_running_elsewhere_comes_back_later(tenant, settings):
    """A dead worker's message is redelivered by the broker before the job's
    heartbeat is stale: it must be retried later, not dropped."""
    job = _job(tenant)
    assert services.job_claim(job_id=str(job.id)) is not None  # "another worker"
    with pytest.raises(services.JobBusy):
        services.job_run(job_id=str(job.id))
    assert _refresh(job).attempts == 1
    stale = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S + 1)
    Job.objects.filter(id=job.id).update(heartbeat_at=stale)  # that worker died
    services.job_run(job_id=str(job.id))
    assert _refresh(job).status == "succeeded"


def test_abandoned_running_job_can_be_claimed_again(tenant, settings):
    stale = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S + 5)
    job = _job(tenant, status=Job.Status.RUNNING, attempts=1, heartbeat_at=stale)
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert job.status == "succeeded" and job.attempts == 2


def test_a_replaced_worker_can_no_longer_touch_the_job_or_its_result(tenant, settings, monkeypatch):
    """Worker A is presumed dead (stale heartbeat) but still running when
    worker B takes the job over: B's result wins, A's writes are refused and
    A removes only its own object."""
    job = _job(tenant)
    worker_a = services.job_claim(job_id=str(job.id))
    stale = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S + 1)
    Job.objects.filter(id=job.id).update(heartbeat_at=stale)
    services.job_run(job_id=str(job.id))  # worker B takes over and finishes
    done = _refresh(job)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert done.result_key.endswith("output-2.wav") and default_storage.exists(done.result_key)
    # A wakes up: progress is refused (it stops), and so is its final write.
    with pytest.raises(Canceled):
        services.job_progress(job=worker_a, percent=50, stage="synthesizing")
    assert services.job_attempt(worker_a) == "canceled"  # its store was refused: no failure reported
    after = _refresh(job)
    assert (after.status, after.result_key, after.progress) == ("succeeded", done.result_key, 100)
    assert default_storage.exists(done.result_key)
    assert not default_storage.exists(done.result_key.replace("output-2", "output-1"))


@pytest.mark.django_db(transaction=True)  # the heartbeat thread has its own connection
def test_heartbeat_survives_database_errors(tenant, settings, monkeypatch):
    settings.JOB_HEARTBEAT_TIMEOUT_S = 4  # beat every second
    job = services.job_claim(job_id=str(_job(tenant).id))
    Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    calls = []
    original = run_module.job_owned

    def flaky(owned_job):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return original(owned_job)

    monkeypatch.setattr(run_module, "job_owned", flaky)
    with run_module._heartbeat(job):
        time.sleep(2.6)
    assert len(calls) >= 2
    assert _refresh(job).heartbeat_at > timezone.now() - timedelta(seconds=3)


def test_a_job_that_keeps_killing_its_worker_fails_as_worker_lost(tenant, settings):
    stale = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S + 5)
    job = _job(tenant, status=Job.Status.RUNNING, attempts=settings.JOB_MAX_ATTEMPTS, heartbeat_at=stale)
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert (job.status, job.error_code, job.attempts) == ("failed", "worker_lost", settings.JOB_MAX_ATTEMPTS)


def test_queued_job_whose_message_was_lost_is_sent_again(tenant, stub_broker, settings):
    job = _job(tenant)
    services.job_resend(job_id=job.id)
    stub_broker.flush_all()  # the message is gone
    assert services.jobs_resend_unsent() == 0  # sent recently: not yet suspicious
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_RESEND_QUEUED_AFTER_S + 1)
    Job.objects.filter(id=job.id).update(enqueued_at=long_ago)
    assert services.jobs_resend_unsent() == 1
    assert stub_broker.queues["tts"].qsize() == 1
    assert services.jobs_resend_unsent() == 0  # enqueued_at refreshed: once per period


def test_permanent_engine_error_fails_at_once_with_its_code(tenant):
    job = _job(tenant, engine="rejecting")
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert (job.status, job.error_code, job.attempts) == ("failed", "text_rejected", 1)
    assert job.error_message == "This text cannot be spoken."


@pytest.mark.parametrize(("engine", "code"), [("unavailable", "engine_unavailable"), ("exploding", "engine_error")])
def test_transient_errors_retry_then_fail_when_attempts_run_out(tenant, settings, engine, code):
    job = _job(tenant, engine=engine)
    for attempt in range(1, settings.JOB_MAX_ATTEMPTS):
        with pytest.raises(JobRetry):
            services.job_run(job_id=str(job.id))
        job = _refresh(job)
        assert (job.status, job.stage, job.attempts, job.error_code) == ("queued", "retrying", attempt, code)
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert (job.status, job.error_code, job.attempts) == ("failed", code, settings.JOB_MAX_ATTEMPTS)
    assert "gave up after" in job.error_message


def test_storage_failure_is_transient_and_never_marks_success(tenant, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(default_storage, "save", broken_save)
    job = _job(tenant)
    with pytest.raises(JobRetry):
        services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert job.status == "queued" and job.error_code == "storage_unavailable" and not job.result_key


def test_job_stops_at_next_progress_point_when_no_longer_running(tenant, monkeypatch):
    job = _job(tenant, text=" ".join(f"Sentence {i} here." for i in range(100)))
    original = services.job_progress
    calls = []

    def cancel_midway(*, job, percent, stage):
        calls.append(stage)
        if len(calls) == 3:
            Job.objects.filter(id=job.id).update(status=Job.Status.CANCELED)
        original(job=job, percent=percent, stage=stage)

    progress_patch(monkeypatch, cancel_midway)
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert job.status == "canceled" and not job.result_key and len(calls) == 3


def test_failed_enqueue_leaves_job_unsent_and_resend_recovers_it(tenant, stub_broker, monkeypatch):
    def redis_down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(dispatch_module, "job_message_send", redis_down)
    job = _job(tenant)
    assert services.job_resend(job_id=job.id) is False
    assert _refresh(job).enqueued_at is None
    monkeypatch.undo()
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(minutes=1))
    assert services.jobs_resend_unsent() == 1
    assert _refresh(job).enqueued_at is not None
    assert stub_broker.queues["tts"].qsize() == 1


@pytest.mark.django_db(transaction=True)  # worker threads use their own connections
def test_worker_survives_an_engine_that_raises(tenant, stub_broker, settings):
    """A real Dramatiq worker (in-memory broker) runs a job whose engine
    raises, retries it, fails it, and keeps processing the next job."""
    bad = _job(tenant, engine="exploding")
    good = _job(tenant, engine="tone")
    worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        tts_job_run.send(str(bad.id))
        tts_job_run.send(str(good.id))
        stub_broker.join("tts", timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    bad, good = _refresh(bad), _refresh(good)
    assert (bad.status, bad.error_code, bad.attempts) == ("failed", "engine_error", settings.JOB_MAX_ATTEMPTS)
    assert good.status == "succeeded"


def test_a_job_stuck_past_its_time_limit_is_retried_then_failed(tenant, settings, stub_broker):
    """Its worker still beats (stuck in native code): the reaper takes the job
    away, so the stuck run can never store a result."""
    overdue = timezone.now() - timedelta(seconds=settings.JOB_TIME_LIMIT_S + settings.JOB_OVERDUE_GRACE_S + 1)
    retry = _job(tenant, status=Job.Status.RUNNING, attempts=1, started_at=overdue, heartbeat_at=timezone.now())
    last = _job(tenant, status=Job.Status.RUNNING, attempts=settings.JOB_MAX_ATTEMPTS, started_at=overdue, heartbeat_at=timezone.now())
    in_time = _job(tenant, status=Job.Status.RUNNING, attempts=1, started_at=timezone.now(), heartbeat_at=timezone.now())
    stub_broker.flush_all()

    assert services.jobs_stop_overdue() == 2

    retry, last, in_time = _refresh(retry), _refresh(last), _refresh(in_time)
    assert (retry.status, retry.error_code) == ("queued", "time_limit_exceeded")
    assert [message.args[0] for message in _messages(stub_broker, "tts")] == [str(retry.id)]
    assert (last.status, last.error_code) == ("failed", "time_limit_exceeded")
    assert in_time.status == "running"
    # The stuck run of the retried job no longer owns it: its next progress stops it.
    stuck = Job(id=retry.id, attempts=1, tenant=tenant)
    with pytest.raises(Canceled):
        services.job_progress(job=stuck, percent=50, stage="still going")


def _messages(broker, queue: str) -> list[dramatiq.Message]:
    return [dramatiq.Message.decode(raw) for raw in list(broker.queues[queue].queue)]


# ------------------------------------------------ how an attempt ends (one policy)


def test_a_time_limit_hit_in_the_worker_is_retried_like_the_repair_sweep_does(tenant, settings, monkeypatch):
    """One policy for a time limit, wherever it is noticed: another attempt
    while attempts remain, then failed (see jobs_stop_overdue's test)."""
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    def too_slow(job, workdir):
        raise TimeLimitExceeded()

    monkeypatch.setattr(run_module, "job_make", too_slow)
    job = _job(tenant)
    for attempt in range(1, settings.JOB_MAX_ATTEMPTS):
        with pytest.raises(JobRetry):
            services.job_run(job_id=str(job.id))
        job = _refresh(job)
        assert (job.status, job.attempts, job.error_code) == ("queued", attempt, "time_limit_exceeded")
    services.job_run(job_id=str(job.id))
    job = _refresh(job)
    assert (job.status, job.error_code) == ("failed", "time_limit_exceeded")
    assert "gave up after" in job.error_message


@pytest.mark.parametrize("error", [TransientEngineError("server down"), PermanentEngineError("bad input", code="text_rejected")])
def test_an_attempt_that_lost_its_job_reports_lost_not_failed(tenant, settings, monkeypatch, caplog, error):
    """The job was taken over (presumed dead worker) while the engine ran,
    and then the engine failed: the run owns nothing, so it neither retries
    nor fails the job, nor reports a failure."""
    job = _job(tenant)

    def taken_over_then_fails(claimed, workdir):
        Job.objects.filter(id=claimed.id).update(attempts=claimed.attempts + 1)  # another worker's claim
        raise error

    monkeypatch.setattr(run_module, "job_make", taken_over_then_fails)
    claimed = services.job_claim(job_id=str(job.id))
    with caplog.at_level("INFO"):
        assert services.job_attempt(claimed) == "lost"
    after = _refresh(job)
    assert (after.status, after.attempts, after.error_code) == ("running", claimed.attempts + 1, "")
    messages = [record.getMessage() for record in caplog.records]
    assert "job failed" not in messages and "transient failure; retrying" not in messages


def test_the_engine_run_metric_counts_a_lost_attempt_as_lost(tenant, monkeypatch):
    job = _job(tenant)
    outcomes = []
    monkeypatch.setattr(run_module.metrics, "observe", lambda metric, value, **labels: outcomes.append(labels.get("outcome")))

    def taken_over_then_fails(claimed, workdir):
        Job.objects.filter(id=claimed.id).update(attempts=claimed.attempts + 1)
        raise TransientEngineError("server down")

    monkeypatch.setattr(run_module, "job_make", taken_over_then_fails)
    services.job_run(job_id=str(job.id))
    assert "lost" in outcomes and "failed" not in outcomes


def test_worker_lost_ends_its_followers_and_frees_the_tenants_slot(tenant, settings, stub_broker):
    """A job that took its worker down on every attempt fails as worker_lost;
    the identical jobs that joined it fail with it at once (not at the next
    repair sweep), and the tenant's next waiting job is dispatched."""
    stale = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S + 5)
    source = _job(tenant, status=Job.Status.RUNNING, attempts=settings.JOB_MAX_ATTEMPTS, heartbeat_at=stale, enqueued_at=stale)
    follower = _job(tenant, dedup_of=source, cache_hit=True)
    waiting = _job(tenant)  # its fair-share turn comes when a slot frees
    tenant.max_in_flight = 1
    tenant.save()
    stub_broker.flush_all()
    services.job_run(job_id=str(source.id))
    source, follower, waiting = _refresh(source), _refresh(follower), _refresh(waiting)
    assert (source.status, source.error_code) == ("failed", "worker_lost")
    assert (follower.status, follower.error_code) == ("failed", "worker_lost")
    assert waiting.enqueued_at is not None
    assert [message.args[0] for message in _messages(stub_broker, "tts")] == [str(waiting.id)]
