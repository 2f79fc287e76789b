from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial"), ("audit", "0002_append_only")]

    operations = [
        migrations.RunSQL(
            "CREATE TRIGGER prompt_version_immutable BEFORE UPDATE OR DELETE ON registry_promptversion "
            "FOR EACH ROW EXECUTE FUNCTION promptramp_refuse_change();",
            "DROP TRIGGER IF EXISTS prompt_version_immutable ON registry_promptversion;",
        ),
    ]
