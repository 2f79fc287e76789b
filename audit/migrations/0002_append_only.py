from django.db import migrations

REFUSE = """
CREATE OR REPLACE FUNCTION promptramp_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(REFUSE, "DROP FUNCTION IF EXISTS promptramp_refuse_change() CASCADE;"),
        migrations.RunSQL(
            "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry "
            "FOR EACH ROW EXECUTE FUNCTION promptramp_refuse_change();",
            "DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;",
        ),
    ]
