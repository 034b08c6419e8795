"""Services send by actor name through ``<app>/routing.py``: the message is
the one the actor would send, and the actors module is never loaded to send."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import dramatiq
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTED_APPS = ("jobs", "voices", "webhooks")


@pytest.mark.parametrize("app", ROUTED_APPS)
def test_routing_names_the_declared_actors_and_their_queues(app):
    from importlib import import_module

    routing = import_module(f"{app}.routing")
    actors = import_module(f"{app}.actors")
    declared = {value.actor_name: value.queue_name for value in vars(actors).values() if isinstance(value, dramatiq.Actor)}
    assert declared == routing.ROUTES
    broker = dramatiq.get_broker()
    assert all(broker.get_actor(name).queue_name == queue for name, queue in routing.ROUTES.items())


def test_a_message_sent_by_name_is_what_the_actor_would_send(stub_broker):
    from voices import routing as voice_routing
    from voices.actors import voice_analyze
    from webhooks import routing

    by_actor = voice_analyze.message_with_options(args=("v-1",))
    sent = voice_routing.send(voice_routing.VOICE_ANALYZE, "v-1")
    assert (sent.queue_name, sent.actor_name, sent.args, sent.kwargs) == (
        by_actor.queue_name,
        by_actor.actor_name,
        by_actor.args,
        by_actor.kwargs,
    )
    assert stub_broker.queues["voices"].qsize() == 1
    delayed = routing.send(routing.WEBHOOK_DELIVER, "d-1", delay_ms=1500)
    assert delayed.queue_name == "webhooks.DQ" and delayed.options["eta"] > 0
    assert stub_broker.queues["webhooks.DQ"].qsize() == 1


def test_services_send_without_loading_the_actors():
    """In a fresh interpreter (as in a web process): a voice analysis and a
    webhook delivery (delayed) reach their queues; no actors module loads."""
    code = """
import json, os, sys, uuid
os.environ["DJANGO_SETTINGS_MODULE"] = "config.test_settings"
import django
django.setup()
import dramatiq
from voices import services as voices_services
from webhooks import services as webhooks_services
voices_services._analysis_send(uuid.UUID(int=1))
webhooks_services._enqueue(uuid.UUID(int=2), delay_s=2.0)
from jobs.services import dispatch
dispatch.job_send(uuid.UUID(int=3), route=("talking_head", "high", 512))
broker = dramatiq.get_broker()
sent = {name: [dramatiq.Message.decode(m).asdict() for m in list(queue.queue)] for name, queue in broker.queues.items()}
print("RESULT " + json.dumps({"loaded": sorted(m for m in sys.modules if m.endswith(".actors")), "sent": sent}))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert not [name for name in report["loaded"] if name.split(".")[0] in ROUTED_APPS], report["loaded"]
    (analysis,) = report["sent"]["voices"]
    assert (analysis["actor_name"], analysis["args"]) == ("voice_analyze", [str(uuid.UUID(int=1))])
    (delivery,) = report["sent"]["webhooks.DQ"]
    assert delivery["actor_name"] == "webhook_deliver" and delivery["options"]["eta"] > 0
    (job,) = report["sent"]["video-high"]
    assert (job["actor_name"], job["args"]) == ("video_job_run_high", [str(uuid.UUID(int=3))])
