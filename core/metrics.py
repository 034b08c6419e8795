"""Prometheus metrics.

Counters and histograms are recorded where things happen (the web process
for requests, workers for engine runs and webhook attempts). With
``PROMETHEUS_MULTIPROC_DIR`` set (``make run`` and the deployment set it),
every process on a host writes its samples there and ``/metrics`` adds them
up, so one scrape of the API shows the workers' numbers too. Without it,
each process keeps its own (tests, a single process).

State that lives elsewhere (jobs queued/running in the database, messages in
the Redis queues) is read at scrape time, not counted, so it is right after
any crash or restart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # samples are files there: it must exist before the first metric
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_JOB_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

http_requests = Counter("mynah_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"])
http_request_seconds = Histogram(
    "mynah_http_request_duration_seconds", "Time to the response (headers, for streams) by route and method.",
    ["route", "method"], buckets=_SECONDS,
)
engine_run_seconds = Histogram(
    "mynah_engine_run_seconds", "Wall time of one job attempt in its engine, by kind, engine and outcome.",
    ["kind", "engine", "outcome"], buckets=_JOB_SECONDS,
)
job_queue_wait_seconds = Histogram(
    "mynah_job_queue_wait_seconds", "From submit (or retry) to a worker starting the job.", ["kind"], buckets=_JOB_SECONDS,
)
jobs_finished = Counter("mynah_jobs_finished", "Jobs that reached a terminal state, by kind and status.", ["kind", "status", "error_code"])
webhook_attempts = Counter(
    "mynah_webhook_delivery_attempts", "Webhook delivery attempts by outcome (succeeded, retrying, failed).", ["outcome"],
)
webhook_attempt_seconds = Histogram(
    "mynah_webhook_delivery_attempt_duration_seconds", "Time a receiver took to answer one delivery attempt.", buckets=_SECONDS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe(metric: Any, value: float, **labels: str) -> None:
    """Record without ever failing the caller (a full disk under the
    multiprocess directory must not fail a job)."""
    try:
        (metric.labels(**labels) if labels else metric).observe(value)
    except Exception:
        logger.warning("could not record a metric", exc_info=True)


def increment(metric: Any, **labels: str) -> None:
    try:
        (metric.labels(**labels) if labels else metric).inc()
    except Exception:
        logger.warning("could not record a metric", exc_info=True)


class StateCollector:
    """Jobs waiting and running (database) and messages per queue (Redis),
    read at scrape time. A part that is down is reported as such (and its
    metrics left out) rather than failing the scrape."""

    def __init__(self) -> None:
        self._collected: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mynah_dependency_up", "Whether /metrics could read a dependency (1) or not (0).", labels=["dependency"])
        up.add_metric(["database"], self._safely(self._jobs))
        up.add_metric(["redis"], self._safely(self._queues))
        yield from self._collected
        yield up

    def _safely(self, read: Callable[[], list[Metric]]) -> float:
        try:
            self._collected.extend(read())
            return 1.0
        except Exception as exc:
            logger.warning("metrics: could not read %s: %s", read.__name__.strip("_"), type(exc).__name__)
            return 0.0

    @staticmethod
    def _jobs() -> list[Metric]:
        from django.db.models import Count, Q

        from jobs.models import Job

        active = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        rows = active.values("kind", "status").annotate(
            count=Count("id"), waiting=Count("id", filter=Q(status=Job.Status.QUEUED, enqueued_at__isnull=True))
        )
        jobs = GaugeMetricFamily("mynah_jobs", "Jobs queued or running, by kind and status.", labels=["kind", "status"])
        waiting = GaugeMetricFamily(
            "mynah_jobs_waiting_dispatch", "Queued jobs held back in the database (fair share) or not yet sent to Redis.", labels=["kind"],
        )
        seen: dict[tuple[str, str], int] = {(kind, status): 0 for kind in Job.Kind.values for status in ("queued", "running")}
        held = dict.fromkeys(Job.Kind.values, 0)
        for row in rows:
            seen[(row["kind"], row["status"])] = row["count"]
            held[row["kind"]] += row["waiting"]
        for (kind, status), count in sorted(seen.items()):
            jobs.add_metric([kind, status], count)
        for kind, count in sorted(held.items()):
            waiting.add_metric([kind], count)
        return [jobs, waiting]

    @staticmethod
    def _queues() -> list[Metric]:
        from jobs.selectors import queue_depths

        depths = queue_depths()
        family = GaugeMetricFamily("mynah_queue_messages", "Messages in each Dramatiq queue, by state.", labels=["queue", "state"])
        for row in depths:
            for state in ("ready", "in_progress", "delayed", "dead"):
                family.add_metric([row["queue"], state], row[state])
        return [family]


def exposition() -> tuple[bytes, str]:
    """The text for one scrape: this host's recorded samples plus the state read now."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        recorded = CollectorRegistry()
        multiprocess.MultiProcessCollector(recorded)
    else:
        recorded = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    return generate_latest(recorded) + generate_latest(state), CONTENT_TYPE_LATEST


def request_route(request: Any) -> str:
    """The URL pattern, not the path: bounded label values (ids stay out)."""
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None and match.route else "unmatched"


def timer() -> Callable[[], float]:
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
