"""Where voice work is sent: queue and actor names, and sending by name.

``voices.actors`` declares its actors under these names and calls the
services; the services send through :func:`send`, never by importing the
actors (that was an import cycle, and it loaded the actors in the web process).
"""

from __future__ import annotations

import dramatiq

from core.messages import message_send

QUEUE = "voices"  # uploads wait on their analysis: a queue of its own

VOICE_ANALYZE = "voice_analyze"

ROUTES = {VOICE_ANALYZE: QUEUE}  # actor name -> queue


def send(actor_name: str, *args: str, delay_ms: int | None = None) -> dramatiq.Message:
    return message_send(queue_name=ROUTES[actor_name], actor_name=actor_name, args=args, delay_ms=delay_ms)
