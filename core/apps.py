from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        import logging

        from core import schema  # noqa: F401  (registers the OpenAPI auth extension)

        # Python warnings become log records: JSON lines like everything else.
        logging.captureWarnings(True)
