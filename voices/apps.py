from django.apps import AppConfig

from core import maintenance


class VoicesConfig(AppConfig):
    """Voice prompts: upload, analysis in workers, the voices API."""

    name = "voices"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        maintenance.register(kind=maintenance.REPAIR, name="voices.resend_stuck", fn=_resend_stuck, order=50)


def _resend_stuck(context: maintenance.Context) -> maintenance.Outcome:
    from voices.services import voices_resend_stuck

    return maintenance.Outcome(f"re-queued {voices_resend_stuck()} voice analyses")
