from django.apps import AppConfig

from core import maintenance


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        import logging

        from core import schema  # noqa: F401  (registers the OpenAPI auth extension)

        # Python warnings become log records: JSON lines like everything else.
        logging.captureWarnings(True)
        maintenance.register(kind=maintenance.PURGE, name="core.idempotency_records", fn=_idempotency_records_purge, order=90)


def _idempotency_records_purge(context: maintenance.Context) -> maintenance.Outcome:
    from core.idempotency import idempotency_records_purge

    deleted = idempotency_records_purge(now=context.now, dry_run=context.dry_run)
    return maintenance.Outcome(f"{'would delete' if context.dry_run else 'deleted'} {deleted} idempotency records")
