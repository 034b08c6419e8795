from django.apps import AppConfig

from core import maintenance


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        maintenance.register(kind=maintenance.REPAIR, name="webhooks.sweep", fn=_sweep, order=40)
        maintenance.register(kind=maintenance.PURGE, name="webhooks.deliveries", fn=_deliveries_purge, order=40)


def _sweep(context: maintenance.Context) -> maintenance.Outcome:
    from webhooks.services import webhooks_sweep

    return maintenance.Outcome(f"sent {webhooks_sweep()} due webhook deliveries")


def _deliveries_purge(context: maintenance.Context) -> maintenance.Outcome:
    from webhooks.services import deliveries_purge

    deleted = deliveries_purge(now=context.now, dry_run=context.dry_run)
    return maintenance.Outcome(f"{'would delete' if context.dry_run else 'deleted'} {deleted} webhook deliveries")
