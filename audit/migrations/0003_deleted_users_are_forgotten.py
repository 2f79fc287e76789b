"""Deleting a user sets the references to them to NULL (their name stays in each row): the
append-only tables accept that one change and refuse every other."""

from django.db import migrations

REFUSE = """
CREATE OR REPLACE FUNCTION promptramp_refuse_change() RETURNS trigger AS $$
BEGIN
    -- TG_ARGV[0], when given, names a user reference that may be set to NULL, alone.
    IF TG_OP = 'UPDATE' AND TG_NARGS > 0
       AND to_jsonb(NEW) -> TG_ARGV[0] = 'null'::jsonb
       AND (to_jsonb(NEW) - TG_ARGV[0]) = (to_jsonb(OLD) - TG_ARGV[0]) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""
REFUSE_BEFORE = """
CREATE OR REPLACE FUNCTION promptramp_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""
TRIGGER = (
    "DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry; "
    "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry "
    "FOR EACH ROW EXECUTE FUNCTION promptramp_refuse_change({});"
)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [
        migrations.RunSQL(REFUSE, REFUSE_BEFORE),
        migrations.RunSQL(TRIGGER.format("'actor_id'"), TRIGGER.format("")),
    ]
