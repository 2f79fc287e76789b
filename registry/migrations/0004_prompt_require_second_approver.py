"""A prompt may require a second approver (registry/approvals.py): off for every existing one."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("registry", "0003_deleted_authors_are_forgotten")]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="require_second_approver",
            field=models.BooleanField(
                default=False,
                help_text="starting a rollout, promoting past a manual step and moving production need a "
                "user other than the author of the version served (registry.approvals)",
            ),
        ),
    ]
