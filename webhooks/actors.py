"""Thin Dramatiq actor: one delivery attempt. Retries are scheduled by the
service (the Delivery row holds the schedule), not by Dramatiq."""

import dramatiq

from webhooks import routing, services


@dramatiq.actor(actor_name=routing.WEBHOOK_DELIVER, queue_name=routing.QUEUE, max_retries=0, time_limit=120_000)
def webhook_deliver(delivery_id: str) -> None:
    services.webhook_deliver(delivery_id=delivery_id)
