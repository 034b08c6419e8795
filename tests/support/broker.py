"""The in-memory (stub) broker's queues, read as job ids."""

from __future__ import annotations


def queued_job_ids(stub_broker, queue: str) -> list[str]:
    """The job ids of the messages waiting on ``queue``, in order."""
    import dramatiq

    import jobs.actors  # noqa: F401  (declares the queues)

    return [dramatiq.Message.decode(raw).args[0] for raw in list(stub_broker.queues[queue].queue)]
