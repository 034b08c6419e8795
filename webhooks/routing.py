"""Where webhook work is sent: queue and actor names, and sending by name.

``webhooks.actors`` declares its actors under these names and calls the
services; the services send through :func:`send`, never by importing the
actors (that was an import cycle).
"""

from __future__ import annotations

import dramatiq

from core.messages import message_send

QUEUE = "webhooks"  # deliveries wait on receivers: never behind generation jobs

WEBHOOK_DELIVER = "webhook_deliver"

ROUTES = {WEBHOOK_DELIVER: QUEUE}  # actor name -> queue


def send(actor_name: str, *args: str, delay_ms: int | None = None) -> dramatiq.Message:
    return message_send(queue_name=ROUTES[actor_name], actor_name=actor_name, args=args, delay_ms=delay_ms)
