from django.apps import AppConfig


class VoicesConfig(AppConfig):
    """Voice prompts (upload, analysis, voice matching) arrive with the
    "Voice prompts" issue; the app is registered now so the layout and the
    dependency direction tenants <- voices <- jobs are fixed from the start."""

    name = "voices"
