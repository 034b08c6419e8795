from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants.models import Tenant
from tenants.services import api_key_create, api_keys_revoke_named


class Command(BaseCommand):
    help = "Create an API key for a tenant. The key is printed once, as the last line."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument("--replace", action="store_true", help="revoke the tenant's active keys with this name first (rotation)")

    def handle(self, *args, slug: str, name: str, expires_in_days: int | None, replace: bool, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant '{slug}'.")
        if replace:
            revoked = api_keys_revoke_named(tenant=tenant, name=name, actor="cli")
            self.stdout.write(f"Revoked {revoked} active key(s) named '{name}'.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        api_key, raw_key = api_key_create(tenant=tenant, name=name, expires_at=expires_at, actor="cli")
        self.stdout.write(
            f"Created API key '{name}' (prefix {api_key.prefix}) for tenant {tenant.slug}. Store it now; it cannot be shown again."
        )
        self.stdout.write(raw_key)
