from importlib import import_module

from django.apps import AppConfig

from core import maintenance


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from django.conf import settings

        from core import metrics
        from engines import registry
        from jobs.metrics import jobs_state, queues_state

        for name, dotted_path in settings.ENGINES_EXTRA.items():
            registry.register(name, dotted_path)
        metrics.register_state(name="jobs", dependency="database", read=jobs_state)
        metrics.register_state(name="queues", dependency="redis", read=queues_state)
        maintenance.register(kind=maintenance.REPAIR, name="jobs.resend_unsent", fn=_resend_unsent, order=10)
        maintenance.register(kind=maintenance.REPAIR, name="jobs.resend_abandoned", fn=_resend_abandoned, order=20)
        maintenance.register(kind=maintenance.REPAIR, name="jobs.stop_overdue", fn=_stop_overdue, order=30)
        maintenance.register(kind=maintenance.PURGE, name="jobs.retention", fn=_retention_purge, order=10)


# Repair and purge steps, run by `manage.py repair` and `manage.py purge_expired`
# (core.maintenance). They look the services up when they run: this module
# loads before the models.


def _services():
    return import_module("jobs.services")


def _resend_unsent(context: maintenance.Context) -> maintenance.Outcome:
    resent = _services().jobs_resend_unsent(older_than_s=context.options.get("unsent_after", 10.0))
    return maintenance.Outcome(f"resent {resent} unsent job(s)")


def _resend_abandoned(context: maintenance.Context) -> maintenance.Outcome:
    return maintenance.Outcome(f"requeued {_services().jobs_resend_abandoned()} abandoned job(s)")


def _stop_overdue(context: maintenance.Context) -> maintenance.Outcome:
    return maintenance.Outcome(f"stopped {_services().jobs_stop_overdue()} job(s) over their time limit")


def _retention_purge(context: maintenance.Context) -> maintenance.Outcome:
    """Expired results and old inputs leave storage (jobs become expired), then
    the sweep of unreferenced objects (``--no-orphans`` skips it)."""
    retention = import_module("jobs.retention")
    report = retention.jobs_purge(now=context.now, dry_run=context.dry_run, orphans=context.options.get("orphans", True))
    verb = "would delete" if context.dry_run else "deleted"
    summary = (
        f"expired {report.jobs_expired} job(s), purged the inputs of {report.jobs_inputs_purged} finished job(s), "
        f"{verb} {report.objects_deleted} object(s) (kept {report.objects_kept_shared} still shared by a cache hit) "
        f"and {report.orphans_deleted} orphan object(s)"
    )
    return maintenance.Outcome(summary, keys=report.keys, errors=report.errors)
