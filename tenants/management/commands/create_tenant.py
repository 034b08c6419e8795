from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from tenants.models import Tenant
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--exist-ok", action="store_true", help="succeed (and change nothing) if the tenant exists")

    def handle(self, *args, slug: str, name: str, exist_ok: bool, **options):
        if exist_ok and Tenant.objects.filter(slug=slug).exists():
            self.stdout.write(f"Tenant {slug} exists")
            return
        try:
            tenant = tenant_create(slug=slug, name=name, actor="cli")
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except Exception as exc:  # validation of the slug
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.id})")
