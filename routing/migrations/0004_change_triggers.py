"""Database triggers that record every route-table change (see routing/changes.py).

Triggers, not Django signals, so that nothing escapes them: admin saves, bulk
updates (the admin's enable/disable actions), API writes, imports and hand-made
SQL all bump routing_routetableversion and append to routing_routechange in the
writing transaction. On PostgreSQL a bulk import sets `routing.bulk = on` for its
transaction and records one 'table' change instead of one per row.
"""

from django.db import migrations

# (table, kind, tenant expression, key expression) with {row} standing for OLD/NEW.
ROW_KINDS = [
    ("tenants_tenant", "tenant", "{row}.id", "''"),
    ("tenants_tenantsource", "sources", "{row}.tenant_id", "''"),
    ("routing_carrier", "carrier", "{row}.tenant_id", "CAST({row}.id AS TEXT)"),
    ("routing_trunk", "trunk", "NULL", "CAST({row}.id AS TEXT)"),
    ("routing_dialprefix", "prefix", "{row}.tenant_id", "{row}.prefix"),
]

PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION routing_log_change(p_kind text, p_tenant bigint, p_key text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    INSERT INTO routing_routetableversion (id, version) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET version = routing_routetableversion.version + 1
    RETURNING version INTO v;
    INSERT INTO routing_routechange (version, kind, tenant_id, key, created_at)
    VALUES (v, p_kind, p_tenant, coalesce(p_key, ''), now());
    IF v % 1000 = 0 THEN
        DELETE FROM routing_routechange WHERE version <= v - 100000;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION routing_target_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM routing_log_change('prefix', p.tenant_id, p.prefix)
        FROM routing_dialprefix p WHERE p.id = OLD.prefix_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.prefix_id <> OLD.prefix_id) THEN
        PERFORM routing_log_change('prefix', p.tenant_id, p.prefix)
        FROM routing_dialprefix p WHERE p.id = NEW.prefix_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER routing_changed AFTER INSERT OR UPDATE OR DELETE ON routing_routetarget
FOR EACH ROW WHEN ({not_bulk}) EXECUTE FUNCTION routing_target_changed();
"""

PG_ROW_FUNCTION = """
CREATE OR REPLACE FUNCTION {table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM routing_log_change('{kind}', {old_tenant}, {old_key});
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE'
            AND ({new_tenant}, {new_key}) IS DISTINCT FROM ({old_tenant}, {old_key})) THEN
        PERFORM routing_log_change('{kind}', {new_tenant}, {new_key});
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER routing_changed AFTER INSERT OR UPDATE OR DELETE ON {table}
FOR EACH ROW WHEN ({not_bulk}) EXECUTE FUNCTION {table}_changed();
"""

# Checked by the trigger's WHEN clause, without calling the function: a bulk import of
# a million rows pays almost nothing for the triggers it turned off.
NOT_BULK = "current_setting('routing.bulk', true) IS DISTINCT FROM 'on'"

SQLITE_LOG = """
    INSERT INTO routing_routetableversion (id, version) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET version = version + 1;
    INSERT INTO routing_routechange (version, kind, tenant_id, key, created_at)
    SELECT (SELECT version FROM routing_routetableversion WHERE id = 1), {what};
"""


def _pg_sql() -> list[str]:
    statements = [PG_FUNCTIONS.replace("{not_bulk}", NOT_BULK)]
    for table, kind, tenant, key in ROW_KINDS:
        statements.append(
            PG_ROW_FUNCTION.format(
                not_bulk=NOT_BULK,
                table=table,
                kind=kind,
                old_tenant=tenant.format(row="OLD"),
                old_key=key.format(row="OLD"),
                new_tenant=tenant.format(row="NEW"),
                new_key=key.format(row="NEW"),
            )
        )
    return statements


def _sqlite_sql() -> list[str]:
    statements = []
    for table, kind, tenant, key in ROW_KINDS:
        for op in ("INSERT", "UPDATE", "DELETE"):
            rows = {"INSERT": ["NEW"], "UPDATE": ["OLD", "NEW"], "DELETE": ["OLD"]}[op]
            body = "".join(
                SQLITE_LOG.format(
                    what=f"'{kind}', {tenant.format(row=row)}, {key.format(row=row)}, "
                    "strftime('%Y-%m-%d %H:%M:%f', 'now')"
                )
                for row in rows
            )
            statements.append(
                f"CREATE TRIGGER {table}_{op.lower()}_changed AFTER {op} ON {table} "
                f"BEGIN {body} END;"
            )
    for op in ("INSERT", "UPDATE", "DELETE"):
        rows = {"INSERT": ["NEW"], "UPDATE": ["OLD", "NEW"], "DELETE": ["OLD"]}[op]
        body = "".join(
            SQLITE_LOG.format(
                what="'prefix', p.tenant_id, p.prefix, strftime('%Y-%m-%d %H:%M:%f', 'now') "
                f"FROM routing_dialprefix p WHERE p.id = {row}.prefix_id"
            )
            for row in rows
        )
        statements.append(
            f"CREATE TRIGGER routing_routetarget_{op.lower()}_changed AFTER {op} "
            f"ON routing_routetarget BEGIN {body} END;"
        )
    return statements


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = _pg_sql()
    elif vendor == "sqlite":
        statements = _sqlite_sql()
    else:
        raise RuntimeError(f"No change triggers for the {vendor} database.")
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        cursor.execute(
            "INSERT INTO routing_routetableversion (id, version) VALUES (1, 0) "
            "ON CONFLICT (id) DO NOTHING"
        )


def uninstall(apps, schema_editor):
    tables = [table for table, *_ in ROW_KINDS] + ["routing_routetarget"]
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            for table in tables:
                cursor.execute(f"DROP TRIGGER IF EXISTS routing_changed ON {table}")
        else:
            for table in tables:
                for op in ("insert", "update", "delete"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {table}_{op}_changed")


class Migration(migrations.Migration):
    dependencies = [("routing", "0003_route_changes"), ("tenants", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
