from django.apps import AppConfig


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
