from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access: API keys"

    def ready(self) -> None:
        from access import announcements  # models are loaded only now

        announcements.connect()
