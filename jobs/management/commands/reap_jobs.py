from django.core.management.base import BaseCommand

from jobs.services import jobs_resend_abandoned, jobs_resend_unsent, jobs_stop_overdue
from voices.services import voices_resend_stuck
from webhooks.services import webhooks_sweep


class Command(BaseCommand):
    help = (
        "Re-send queued jobs whose message never reached Redis, requeue running jobs whose worker died, "
        "retry or fail running jobs past their time limit, "
        "send webhook deliveries that are due (long backoffs, lost messages, dead workers), "
        "and re-queue voice analyses whose message was lost."
    )

    def add_arguments(self, parser):
        parser.add_argument("--unsent-after", type=float, default=10.0, help="seconds a queued job may stay unsent")

    def handle(self, *args, unsent_after: float, **options):
        resent = jobs_resend_unsent(older_than_s=unsent_after)
        requeued = jobs_resend_abandoned()
        overdue = jobs_stop_overdue()
        deliveries = webhooks_sweep()
        voices = voices_resend_stuck()
        self.stdout.write(
            f"resent {resent} unsent job(s); requeued {requeued} abandoned job(s); stopped {overdue} job(s) over their time limit; "
            f"sent {deliveries} due webhook deliveries; "
            f"re-queued {voices} voice analyses"
        )
