from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.services import apikey_create
from core.actors import Actor
from core.errors import DomainError


class Command(BaseCommand):
    help = "Create an API key; the key is printed alone on the last line and never shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--user", required=True)
        parser.add_argument(
            "--scopes", default="read", help="comma-separated: read,ingest,write,checks,admin"
        )
        parser.add_argument(
            "--prompts",
            default="",
            help="comma-separated names or prefixes ending in * (default: every prompt)",
        )

    def handle(self, *args: object, **options: str) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        actor = Actor(user_id=None, name="system", is_admin=True, via="command:create_api_key")
        try:
            key, raw = apikey_create(
                actor=actor,
                name=options["name"],
                user=user,
                scopes=options["scopes"].split(","),
                prompts=options["prompts"].split(",") if options["prompts"] else None,
            )
        except DomainError as error:
            raise CommandError(error.message) from error
        reach = f" on {','.join(key.prompts)}" if key.prompts else ""
        self.stdout.write(
            f"created API key {key.name!r} for {user.get_username()} with {','.join(key.scopes)}{reach}"
        )
        self.stdout.write(raw)
