from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import maintenance


class Command(BaseCommand):
    help = (
        "Run every app's purge steps: delete expired results and the inputs of long-finished jobs from storage and "
        "mark the jobs expired; sweep unreferenced objects; trim old webhook deliveries and idempotency records. "
        "Safe to re-run and to run concurrently (schedule it hourly)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="report what would be deleted; change nothing")
        parser.add_argument("--no-orphans", action="store_true", help="skip the storage sweep for unreferenced objects")

    def handle(self, *args, dry_run: bool, no_orphans: bool, **options):
        context = maintenance.Context(now=timezone.now(), dry_run=dry_run, options={"orphans": not no_orphans})
        results = maintenance.run(maintenance.PURGE, context=context)
        outcomes = [result.outcome for result in results if result.outcome is not None]
        if dry_run or options["verbosity"] > 1:
            for key in (key for outcome in outcomes for key in outcome.keys):
                self.stdout.write(f"{'would delete' if dry_run else 'deleted'} {key}")
        errors = sum(outcome.errors for outcome in outcomes)
        self.stdout.write(f"{'[dry run] ' if dry_run else ''}{', '.join(maintenance.summaries(results))}; {errors} error(s)")
        failed = maintenance.failed(results)
        if failed:
            raise CommandError(f"purge step(s) failed: {', '.join(failed)} (logged); the others ran.")
        if errors:
            # Non-zero exit: cron and Kubernetes report the failed run.
            raise CommandError(f"{errors} object(s) could not be deleted (storage errors); the next run retries them.")
