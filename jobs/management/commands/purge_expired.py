from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Delete expired results and the inputs of long-finished jobs from storage and mark the jobs expired; "
        "sweep unreferenced objects; trim old webhook deliveries and idempotency records. "
        "Safe to re-run and to run concurrently (schedule it hourly)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="report what would be deleted; change nothing")
        parser.add_argument("--no-orphans", action="store_true", help="skip the storage sweep for unreferenced objects")

    def handle(self, *args, dry_run: bool, no_orphans: bool, **options):
        report = purge_expired(now=timezone.now(), dry_run=dry_run, orphans=not no_orphans)
        if dry_run or options["verbosity"] > 1:
            for key in report.keys:
                self.stdout.write(f"{'would delete' if dry_run else 'deleted'} {key}")
        self.stdout.write(report.summary())
        if report.errors:
            # Non-zero exit: cron and Kubernetes report the failed run.
            raise CommandError(f"{report.errors} object(s) could not be deleted (storage errors); the next run retries them.")
