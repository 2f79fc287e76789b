import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.services import admin_ensure
from core.secret_files import kept_secret


class Command(BaseCommand):
    help = (
        "Make sure the admin user (PROMPTRAMP_ADMIN_USER) exists. With PROMPTRAMP_ADMIN_PASSWORD its "
        "password is set to it; without, an existing admin keeps the password it has, and a new one "
        "gets the password kept in --password-file (generated there when the file is missing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password-file", type=Path, help="where a generated password is kept")

    def handle(self, *args: object, password_file: Path | None, **options: object) -> None:
        given = settings.PROMPTRAMP_ADMIN_PASSWORD or None
        user, created = admin_ensure(
            username=settings.PROMPTRAMP_ADMIN_USER,
            password=given,
            new_password=lambda: _kept_password(password_file),
        )
        self.stdout.write(f"admin user {user.get_username()!r} {'created' if created else 'ready'}")


def _kept_password(path: Path | None) -> str:
    if path is None:
        raise CommandError("The admin does not exist: give PROMPTRAMP_ADMIN_PASSWORD or --password-file.")
    return kept_secret(path, lambda: secrets.token_urlsafe(12))
