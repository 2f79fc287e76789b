from django.urls import path, register_converter

from rollouts.api import views


class IdConverter:
    """A database id: at most 18 digits, so it always fits a bigint (longer ones are a 404)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("prompts/<str:name>/rollouts", views.PromptRolloutsView.as_view(), name="prompt-rollouts"),
    path("rollouts", views.RolloutsView.as_view(), name="rollouts"),
    path("rollouts/<id:rollout_id>", views.RolloutView.as_view(), name="rollout"),
    *[
        path(
            f"rollouts/<id:rollout_id>/{action}",
            views.RolloutActionView.as_view(action_name=action),
            name=f"rollout-{action}",
        )
        for action in views.ACTIONS
    ],
    path("rollouts/<id:rollout_id>/checks", views.RolloutChecksView.as_view(), name="rollout-checks"),
    path("webhooks", views.WebhooksView.as_view(), name="webhooks"),
    path("webhooks/<id:webhook_id>", views.WebhookView.as_view(), name="webhook"),
]
