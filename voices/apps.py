from django.apps import AppConfig


class VoicesConfig(AppConfig):
    """Voice prompts: upload, analysis in workers, the voices API."""

    name = "voices"
    default_auto_field = "django.db.models.BigAutoField"
