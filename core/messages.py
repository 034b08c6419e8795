"""Send a Dramatiq message by actor name.

Each app that has actors keeps a ``routing`` module beside them: the queue
and actor names, and a ``send`` that calls :func:`message_send`. The actors
module declares its actors under those names and calls the services; the
services send through ``routing``. So services never import actors (no
import cycle), and a web process never loads the actors at all.
"""

from __future__ import annotations

from typing import Any

import dramatiq


def message_send(
    *,
    queue_name: str,
    actor_name: str,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    delay_ms: int | None = None,
    **options: Any,
) -> dramatiq.Message:
    """Enqueue what ``actor.send_with_options(args=..., kwargs=..., delay=...)``
    would, without the actor: the message carries the actor's name and its
    queue; the worker that declared the actor runs it. ``options`` are
    message options for the broker and middleware, as in Dramatiq."""
    broker = dramatiq.get_broker()
    broker.declare_queue(queue_name)  # a no-op once declared; the stub broker refuses unknown queues
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=tuple(args), kwargs=kwargs or {}, options=options
    )
    return broker.enqueue(message, delay=delay_ms)
