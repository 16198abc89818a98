"""Keep the change triggers of migration 0004 out of SQLite's table rebuilds.

SQLite alters a table by copying it into a new one and renaming that; the rename
fails while a trigger on another table (routing_routetarget's) names the old one.
A migration that adds or alters columns of a route-table model wraps its
operations in `sqlite_triggers_lifted()`. PostgreSQL alters in place: nothing to do.
(The migration loader skips modules whose name starts with "_".)
"""

from importlib import import_module

from django.db import migrations

FIRST = import_module("routing.migrations.0004_change_triggers")


def sqlite_triggers_lifted(*operations, triggers=FIRST):
    """`operations` with SQLite's change triggers dropped before and created after.

    `triggers` is the module of the trigger version in force at that migration
    (0004's, or routing.migrations._change_triggers from 0007 on).
    """

    def drop(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            triggers.uninstall(apps, schema_editor)

    def create(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            triggers.install(apps, schema_editor)

    return [
        migrations.RunPython(drop, create),
        *operations,
        migrations.RunPython(create, drop),
    ]
