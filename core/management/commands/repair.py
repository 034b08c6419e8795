from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import maintenance


class Command(BaseCommand):
    help = (
        "Run every app's repair steps: re-send queued jobs whose message never reached Redis, requeue running jobs "
        "whose worker died, retry or fail running jobs past their time limit, send webhook deliveries that are due "
        "(long backoffs, lost messages, dead workers), and re-queue voice analyses whose message was lost. "
        "Safe to re-run and to run concurrently (schedule it every minute)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--unsent-after", type=float, default=10.0, help="seconds a queued job may stay unsent")

    def handle(self, *args, unsent_after: float, **options):
        context = maintenance.Context(now=timezone.now(), options={"unsent_after": unsent_after})
        results = maintenance.run(maintenance.REPAIR, context=context)
        self.stdout.write("; ".join(maintenance.summaries(results)) or "no repair steps are registered")
        failed = maintenance.failed(results)
        if failed:
            raise CommandError(f"repair step(s) failed: {', '.join(failed)} (logged); the others ran.")
