from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self) -> None:
        from tenants import admin_login  # noqa: F401  (connects the admin lockout audit)
