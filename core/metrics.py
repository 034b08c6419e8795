"""Prometheus metrics.

Counters and histograms are recorded where things happen (the web process
for requests, workers for engine runs and webhook attempts). With
``PROMETHEUS_MULTIPROC_DIR`` set (``make run`` and the deployment set it),
every process on a host writes its samples there and ``/metrics`` adds them
up, so one scrape of the API shows the workers' numbers too. Without it,
each process keeps its own (tests, a single process).

State that lives elsewhere (jobs queued/running in the database, messages in
the Redis queues) is read at scrape time, not counted, so it is right after
any crash or restart. The apps that own that state register its readers
(``register_state``, from their ``AppConfig.ready()``): core imports no app.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
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
    "mynah_http_request_duration_seconds",
    "Time to the response (headers, for streams) by route and method.",
    ["route", "method"],
    buckets=_SECONDS,
)
engine_run_seconds = Histogram(
    "mynah_engine_run_seconds",
    "Wall time of one job attempt in its engine, by kind, engine and outcome.",
    ["kind", "engine", "outcome"],
    buckets=_JOB_SECONDS,
)
job_queue_wait_seconds = Histogram(
    "mynah_job_queue_wait_seconds",
    "From submit (or retry) to a worker starting the job.",
    ["kind"],
    buckets=_JOB_SECONDS,
)
jobs_finished = Counter("mynah_jobs_finished", "Jobs that reached a terminal state, by kind and status.", ["kind", "status", "error_code"])
webhook_attempts = Counter(
    "mynah_webhook_delivery_attempts",
    "Webhook delivery attempts by outcome (succeeded, retrying, failed).",
    ["outcome"],
)
webhook_attempt_seconds = Histogram(
    "mynah_webhook_delivery_attempt_duration_seconds",
    "Time a receiver took to answer one delivery attempt.",
    buckets=_SECONDS,
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


# State read at scrape time, registered by the apps that own it (in their
# AppConfig.ready()): name -> (the dependency it reads, the reader).
_state_readers: dict[str, tuple[str, Callable[[], Iterable[Metric]]]] = {}


def register_state(*, name: str, dependency: str, read: Callable[[], Iterable[Metric]]) -> None:
    """Have every scrape call ``read()`` for metrics of state that lives
    elsewhere (rows in the database, keys in Redis). ``dependency`` names what
    it reads: when ``read`` raises, its metrics are left out and
    ``mynah_dependency_up{dependency=...}`` is 0. Registering a name again
    replaces its reader."""
    _state_readers[name] = (dependency, read)


class StateCollector:
    """The registered state readers, run at scrape time. A dependency that is
    down is reported as such (and its readers' metrics left out) rather than
    failing the scrape."""

    def collect(self) -> Iterator[Metric]:
        collected: list[Metric] = []
        up: dict[str, float] = {}
        for name, (dependency, read) in list(_state_readers.items()):
            try:
                collected.extend(list(read()))  # all of a reader's metrics, or none
                ok = 1.0
            except Exception as exc:
                logger.warning("metrics: could not read %s: %s", name, type(exc).__name__)
                ok = 0.0
            up[dependency] = min(up.get(dependency, 1.0), ok)
        yield from collected
        if up:
            family = GaugeMetricFamily(
                "mynah_dependency_up", "Whether /metrics could read a dependency (1) or not (0).", labels=["dependency"]
            )
            for dependency, value in up.items():
                family.add_metric([dependency], value)
            yield family


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
