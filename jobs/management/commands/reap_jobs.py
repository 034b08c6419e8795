from django.core.management.base import BaseCommand

from jobs.services import jobs_requeue_abandoned, jobs_resend_unsent
from webhooks.services import webhooks_sweep


class Command(BaseCommand):
    help = (
        "Re-send queued jobs whose message never reached Redis, requeue running jobs whose worker died, "
        "and send webhook deliveries that are due (long backoffs, lost messages, dead workers)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--unsent-after", type=float, default=10.0, help="seconds a queued job may stay unsent")

    def handle(self, *args, unsent_after: float, **options):
        resent = jobs_resend_unsent(older_than_s=unsent_after)
        requeued = jobs_requeue_abandoned()
        deliveries = webhooks_sweep()
        self.stdout.write(f"resent {resent} unsent job(s); requeued {requeued} abandoned job(s); sent {deliveries} due webhook deliveries")
