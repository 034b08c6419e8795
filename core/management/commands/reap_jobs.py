from core.management.commands.repair import Command as RepairCommand


class Command(RepairCommand):
    help = "Deprecated: the old name of `repair` (same options, same output), kept for deployments that still call it."

    def handle(self, *args, **options):
        self.stderr.write("reap_jobs is deprecated: run `manage.py repair` instead.")
        return super().handle(*args, **options)
