from django.db import migrations

# Adding two aggregates' JSON parts, used by the flush's INSERT … ON CONFLICT DO UPDATE:
# {"<key>": count} maps add per key; {"<name>": {"count", "sum", "sumsq"}} maps add per name and part.
ADD_COUNTS = """
CREATE OR REPLACE FUNCTION outcomes_add_counts(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)
    FROM (
        SELECT key, sum(value::bigint) AS total
        FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b)) AS parts
        GROUP BY key
    ) AS sums
$$;
"""

ADD_MOMENTS = """
CREATE OR REPLACE FUNCTION outcomes_add_moments(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        jsonb_object_agg(key, jsonb_build_object('count', n, 'sum', s, 'sumsq', q)), '{}'::jsonb
    )
    FROM (
        SELECT key,
               sum((value->>'count')::bigint) AS n,
               sum((value->>'sum')::float8) AS s,
               sum((value->>'sumsq')::float8) AS q
        FROM (SELECT * FROM jsonb_each(a) UNION ALL SELECT * FROM jsonb_each(b)) AS parts
        GROUP BY key
    ) AS sums
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0001_initial")]

    operations = [
        migrations.RunSQL(ADD_COUNTS, "DROP FUNCTION IF EXISTS outcomes_add_counts(jsonb, jsonb);"),
        migrations.RunSQL(ADD_MOMENTS, "DROP FUNCTION IF EXISTS outcomes_add_moments(jsonb, jsonb);"),
    ]
