from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from core.actors import Actor
from registry.models import Prompt
from registry.services import prompt_create, version_create

DEMO_PROMPT = "demo.greeting"


class Command(BaseCommand):
    help = f"Load the demo prompt '{DEMO_PROMPT}' with two versions (does nothing if it exists)."

    def handle(self, *args: object, **options: object) -> None:
        if Prompt.objects.filter(name=DEMO_PROMPT).exists():
            self.stdout.write(f"demo prompt {DEMO_PROMPT!r} already loaded")
            return
        admin = get_user_model().objects.filter(username=settings.PROMPTRAMP_ADMIN_USER).first()
        actor = Actor(
            user_id=admin.pk if admin else None,
            name=admin.get_username() if admin else "system",
            is_admin=True,
            via="command:load_demo",
        )
        prompt_create(
            actor=actor,
            name=DEMO_PROMPT,
            kind="text",
            description="Greets a customer by name; loaded by `make run` to try promptramp.",
            tags=["demo"],
            owners=[admin.get_username()] if admin else [],
        )
        version_create(
            actor=actor,
            prompt_name=DEMO_PROMPT,
            template="Hello {{name}}, how can I help you today?",
            model="gpt-4o-mini",
            config={"temperature": 0.2},
            message="First greeting",
        )
        version_create(
            actor=actor,
            prompt_name=DEMO_PROMPT,
            template="Hi {{name}}! Thanks for contacting {{company}}. What can I do for you?",
            model="gpt-4o-mini",
            config={"temperature": 0.3},
            message="Warmer greeting that names the company",
            labels=["staging"],
        )
        self.stdout.write(f"demo prompt {DEMO_PROMPT!r} loaded with versions 1 (production) and 2 (staging)")
