from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from django.conf import settings

        from engines import registry

        for name, dotted_path in settings.ENGINES_EXTRA.items():
            registry.register(name, dotted_path)
