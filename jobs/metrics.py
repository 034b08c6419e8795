"""Jobs' state for /metrics, read at scrape time: jobs queued and running (the
database) and messages per Dramatiq queue (the Redis broker's keys).
Registered with ``core.metrics.register_state`` in ``JobsConfig.ready()``."""

from __future__ import annotations

from django.db.models import Count, Q
from prometheus_client.core import GaugeMetricFamily, Metric

from jobs.models import Job
from jobs.selectors import queue_depths


def jobs_state() -> list[Metric]:
    active = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    rows = active.values("kind", "status").annotate(
        count=Count("id"), waiting=Count("id", filter=Q(status=Job.Status.QUEUED, enqueued_at__isnull=True))
    )
    jobs = GaugeMetricFamily("mynah_jobs", "Jobs queued or running, by kind and status.", labels=["kind", "status"])
    waiting = GaugeMetricFamily(
        "mynah_jobs_waiting_dispatch",
        "Queued jobs held back in the database (fair share) or not yet sent to Redis.",
        labels=["kind"],
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


def queues_state() -> list[Metric]:
    family = GaugeMetricFamily("mynah_queue_messages", "Messages in each Dramatiq queue, by state.", labels=["queue", "state"])
    for row in queue_depths():
        for state in ("ready", "in_progress", "delayed", "dead"):
            family.add_metric([row["queue"], state], row[state])
    return [family]
