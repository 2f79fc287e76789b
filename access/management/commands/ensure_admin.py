from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from access.services import admin_ensure


class Command(BaseCommand):
    help = "Make sure the admin user (PROMPTRAMP_ADMIN_USER, PROMPTRAMP_ADMIN_PASSWORD) exists."

    def handle(self, *args: object, **options: object) -> None:
        password = settings.PROMPTRAMP_ADMIN_PASSWORD
        if not password:
            raise CommandError("PROMPTRAMP_ADMIN_PASSWORD is not set.")
        user, created = admin_ensure(username=settings.PROMPTRAMP_ADMIN_USER, password=password)
        self.stdout.write(f"admin user {user.get_username()!r} {'created' if created else 'ready'}")
