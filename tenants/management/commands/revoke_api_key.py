from django.core.management.base import BaseCommand, CommandError

from tenants.models import ApiKey
from tenants.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its visible prefix."

    def add_arguments(self, parser):
        parser.add_argument("prefix")

    def handle(self, *args, prefix: str, **options):
        api_key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
        if api_key is None:
            raise CommandError(f"No API key with prefix '{prefix}'.")
        api_key_revoke(api_key=api_key, actor="cli")
        self.stdout.write(f"Revoked API key {prefix} of tenant {api_key.tenant.slug}")
