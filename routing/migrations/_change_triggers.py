"""The change triggers as they are now (routing/changes.py explains what they record).

Migration 0004 installed the first version; 0007 replaced it with this one, which
keys a route's changes by its plan ("<plan id>:<prefix>") and covers routing plans,
customers and customer sources. A migration that makes SQLite rebuild a route
table wraps its operations in `_triggers.sqlite_triggers_lifted(..., triggers=this)`.
(The migration loader skips modules whose name starts with "_".)
"""

# (table, kind, tenant expression, key expression) with {row} standing for OLD/NEW.
ROW_KINDS = [
    ("tenants_tenant", "tenant", "{row}.id", "''"),
    ("tenants_tenantsource", "sources", "{row}.tenant_id", "''"),
    ("routing_carrier", "carrier", "{row}.tenant_id", "CAST({row}.id AS TEXT)"),
    ("routing_trunk", "trunk", "NULL", "CAST({row}.id AS TEXT)"),
    (
        "routing_dialprefix",
        "prefix",
        "{row}.tenant_id",
        "CAST({row}.plan_id AS TEXT) || ':' || {row}.prefix",
    ),
    ("routing_routingplan", "plan", "{row}.tenant_id", "CAST({row}.id AS TEXT)"),
    ("routing_customer", "customers", "{row}.tenant_id", "''"),
    # From 0012: a schedule's routes and targets read it from a per-tenant map.
    ("routing_schedule", "schedules", "{row}.tenant_id", "CAST({row}.id AS TEXT)"),
]
# Rows whose change is their parent's: (table, parent table, foreign key, kind, tenant
# expression, key expression) with p standing for the parent row.
CHILD_KINDS = [
    (
        "routing_routetarget",
        "routing_dialprefix",
        "prefix_id",
        "prefix",
        "p.tenant_id",
        "CAST(p.plan_id AS TEXT) || ':' || p.prefix",
    ),
    ("routing_customersource", "routing_customer", "customer_id", "customers", "p.tenant_id", "''"),
]

PG_LOG_FUNCTION = """
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

PG_CHILD_FUNCTION = """
CREATE OR REPLACE FUNCTION {table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM routing_log_change('{kind}', {tenant}, {key})
        FROM {parent} p WHERE p.id = OLD.{fk};
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{fk} <> OLD.{fk}) THEN
        PERFORM routing_log_change('{kind}', {tenant}, {key})
        FROM {parent} p WHERE p.id = NEW.{fk};
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
_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_ROWS = {"INSERT": ["NEW"], "UPDATE": ["OLD", "NEW"], "DELETE": ["OLD"]}


def tables(present: set[str] | None = None) -> list[str]:
    """The tracked tables (those of them in `present`, when given)."""
    every = [table for table, *_ in ROW_KINDS] + [table for table, *_ in CHILD_KINDS]
    return [table for table in every if present is None or table in present]


def _present(schema_editor) -> set[str]:
    """The tables that exist: an earlier migration installs triggers on those only
    (routing_schedule comes with 0012, which installs them again)."""
    with schema_editor.connection.cursor() as cursor:
        return set(schema_editor.connection.introspection.table_names(cursor))


def _pg_sql(present: set[str]) -> list[str]:
    statements = [PG_LOG_FUNCTION]
    for table, kind, tenant, key in ROW_KINDS:
        if table not in present:
            continue
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
    for table, parent, fk, kind, tenant, key in CHILD_KINDS:
        statements.append(
            PG_CHILD_FUNCTION.format(
                not_bulk=NOT_BULK,
                table=table,
                parent=parent,
                fk=fk,
                kind=kind,
                tenant=tenant,
                key=key,
            )
        )
    return statements


def _sqlite_sql(present: set[str]) -> list[str]:
    statements = []
    for table, kind, tenant, key in ROW_KINDS:
        if table not in present:
            continue
        for op, rows in _ROWS.items():
            body = "".join(
                SQLITE_LOG.format(
                    what=f"'{kind}', {tenant.format(row=row)}, {key.format(row=row)}, {_NOW}"
                )
                for row in rows
            )
            statements.append(
                f"CREATE TRIGGER {table}_{op.lower()}_changed AFTER {op} ON {table} "
                f"BEGIN {body} END;"
            )
    for table, parent, fk, kind, tenant, key in CHILD_KINDS:
        for op, rows in _ROWS.items():
            body = "".join(
                SQLITE_LOG.format(
                    what=f"'{kind}', {tenant}, {key}, {_NOW} FROM {parent} p "
                    f"WHERE p.id = {row}.{fk}"
                )
                for row in rows
            )
            statements.append(
                f"CREATE TRIGGER {table}_{op.lower()}_changed AFTER {op} ON {table} "
                f"BEGIN {body} END;"
            )
    return statements


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    present = _present(schema_editor)
    if vendor == "postgresql":
        statements = _pg_sql(present)
    elif vendor == "sqlite":
        statements = _sqlite_sql(present)
    else:
        raise RuntimeError(f"No change triggers for the {vendor} database.")
    uninstall(apps, schema_editor)
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        cursor.execute(
            "INSERT INTO routing_routetableversion (id, version) VALUES (1, 0) "
            "ON CONFLICT (id) DO NOTHING"
        )


def uninstall(apps, schema_editor):
    present = _present(schema_editor)
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            for table in tables(present):
                cursor.execute(f"DROP TRIGGER IF EXISTS routing_changed ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS routing_target_changed()")  # 0004's
        else:
            for table in tables(present):
                for op in ("insert", "update", "delete"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {table}_{op}_changed")
