"""A version's author may be deleted: its ``author_id`` becomes NULL (``author_name`` stays), the
one change the immutable versions accept (see audit 0003)."""

from django.db import migrations

TRIGGER = (
    "DROP TRIGGER IF EXISTS prompt_version_immutable ON registry_promptversion; "
    "CREATE TRIGGER prompt_version_immutable BEFORE UPDATE OR DELETE ON registry_promptversion "
    "FOR EACH ROW EXECUTE FUNCTION promptramp_refuse_change({});"
)


class Migration(migrations.Migration):
    dependencies = [("registry", "0002_versions_immutable"), ("audit", "0003_deleted_users_are_forgotten")]

    operations = [migrations.RunSQL(TRIGGER.format("'author_id'"), TRIGGER.format(""))]
