"""Writes of blocklists and their entries: the admin, the REST API and the command share them.

Each write checks the tenant rule (routing.services.require_tenant: a user writes
into their own tenant only) and the models' rules (`full_clean()`), saves in one
transaction, re-checks that every row touched is visible to the user, and records
a `blocklist` change in the route-table change log (routing.changes) so that every
process's compiled store (blocklists.lookup) reloads that list: key "<id>" when its
entries changed (the list is rebuilt), "<id>:meta" when only its row did. There are
no triggers on these tables: a write around the services is not seen by running
processes until their next full reload.
"""

from __future__ import annotations

from django.db import connections, transaction
from django.db.models import F

from blocklists.models import Blocklist, BlocklistEntry
from routing import changes
from routing.services import check_written, require_tenant
from tenants.scoping import tenant_of


def record_list_change(blocklist: Blocklist, *, entries: bool, using: str = "default") -> int:
    """Tell every process to reload the list (its entries too when `entries`)."""
    key = str(blocklist.pk) if entries else f"{blocklist.pk}:meta"
    return changes.record_change(
        changes.BLOCKLIST, tenant_id=blocklist.tenant_id, key=key, using=using
    )


def save_list(*, user, blocklist: Blocklist) -> Blocklist:
    """Create or change a list (its row: name, kind, code, reason, customer, active)."""
    with transaction.atomic():
        require_tenant(user=user, tenant=tenant_of(blocklist))
        blocklist.full_clean()
        blocklist.save()
        check_written(user=user, rows=[blocklist])
        record_list_change(blocklist, entries=False)
    return blocklist


def delete_list(*, user, blocklist: Blocklist) -> None:
    """Delete a list and its entries (one statement, not one per entry)."""
    with transaction.atomic():
        require_tenant(user=user, tenant=tenant_of(blocklist))
        check_written(user=user, rows=[blocklist])
        with connections["default"].cursor() as cursor:
            sql = "DELETE FROM blocklists_blocklistentry WHERE list_id = %s"
            cursor.execute(sql, [blocklist.pk])
        record_list_change(blocklist, entries=True)
        blocklist.delete()


def save_entry(*, user, entry: BlocklistEntry) -> BlocklistEntry:
    """Add or change one entry (the value is checked against the list's kind)."""
    with transaction.atomic():
        blocklist = entry.list
        require_tenant(user=user, tenant=tenant_of(blocklist))
        if entry.pk is not None:
            before = BlocklistEntry.objects.filter(pk=entry.pk).values_list("list_id", flat=True)
            moved_from = before.first()
        else:
            moved_from = None
        entry.full_clean()
        created = entry.pk is None
        entry.save()
        check_written(user=user, rows=[entry, blocklist])
        if created:
            Blocklist.objects.filter(pk=blocklist.pk).update(entries_count=F("entries_count") + 1)
        elif moved_from is not None and moved_from != blocklist.pk:
            old = Blocklist.objects.get(pk=moved_from)
            require_tenant(user=user, tenant=old.tenant)
            Blocklist.objects.filter(pk=old.pk).update(entries_count=F("entries_count") - 1)
            Blocklist.objects.filter(pk=blocklist.pk).update(entries_count=F("entries_count") + 1)
            record_list_change(old, entries=True)
        record_list_change(blocklist, entries=True)
    return entry


def delete_entry(*, user, entry: BlocklistEntry) -> None:
    with transaction.atomic():
        blocklist = entry.list
        require_tenant(user=user, tenant=tenant_of(blocklist))
        check_written(user=user, rows=[entry])
        entry.delete()
        Blocklist.objects.filter(pk=blocklist.pk).update(entries_count=F("entries_count") - 1)
        record_list_change(blocklist, entries=True)


def list_named(*, tenant: str, name: str) -> Blocklist:
    """The list `name` of the tenant with slug `tenant`; LookupError with a message if none."""
    found = Blocklist.objects.select_related("tenant").filter(tenant__slug=tenant, name=name)
    blocklist = found.first()
    if blocklist is None:
        raise LookupError(f"No blocklist {name!r} in tenant {tenant!r}.")
    return blocklist
