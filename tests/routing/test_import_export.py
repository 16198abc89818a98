"""CSV import and export: every bad row reported, all or nothing, exact round trips."""

from __future__ import annotations

import io
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from routing import changes
from routing.exporting import ExportError, write_csv
from routing.importing import ImportFailed, import_prefixes
from routing.models import DialPrefix, ImportRecord, RouteChange
from routing.resolver import CallRequest, resolve
from routing.tables import DatabaseRouteTable
from tests.factories import default_plan, make_route, make_trunk

# Files written before routes could be final have no is_final column: they still import.
HEADER = "prefix,action,routing_mode,targets,min_length,max_length,reject_code,reject_reason,description,is_active\n"  # noqa: E501
EXPORT_HEADER = HEADER.replace(
    "is_active\n",
    "is_active,is_final,strategy,lcr_code,margin_percent,margin_absolute,max_cost\n",
).replace("prefix,action", "prefix,caller_prefix,caller_pattern,schedule,action")


def text(body: str):
    return lambda: io.StringIO(body)


def table_of(tenant) -> list[tuple]:
    """The tenant's table without ids: what an import must reproduce."""
    return [
        (
            p.prefix,
            p.action,
            p.routing_mode,
            p.min_length,
            p.max_length,
            p.reject_code,
            p.reject_reason,
            p.description,
            p.is_active,
            p.is_final,
            sorted(
                (t.trunk.carrier.name, t.trunk.name, t.priority, t.weight) for t in p.targets.all()
            ),
        )
        for p in DialPrefix.objects.filter(tenant=tenant).order_by("prefix")
    ]


def export_text(tenant) -> str:
    out = io.StringIO()
    write_csv(tenant, out)
    return out.getvalue()


@pytest.fixture
def varied_a(tenant_a, trunks_a):
    """tenant A with every kind of row, names and descriptions that need CSV quoting."""
    primary, backup = trunks_a
    odd = make_trunk(tenant_a, "odd:name", carrier='Carrier, Quoted "Ltd"')
    make_route(tenant_a, "", backup, description="default, fallback")
    make_route(tenant_a, "33", (primary, 1, 70), (backup, 1, 30), (odd, 2, 100))
    make_route(
        tenant_a, "336", odd, routing_mode="parallel", min_length=9, max_length=12, is_final=True
    )
    make_route(
        tenant_a,
        "34",
        primary,
        backup,
        strategy="lcr",
        lcr_code=403,
        margin_percent=Decimal("12.5"),
        max_cost=Decimal("0.0125"),
    )
    make_route(tenant_a, "339", action="reject", reject_code=403, reject_reason="Premium, no")
    make_route(tenant_a, "2", action="location", description="Büro «extensions»\tback\\slash")
    make_route(tenant_a, "44", primary, is_active=False)
    # Equal priority and weight: only the targets' order in the file tells them apart.
    make_route(tenant_a, "49", (backup, 1, 100), (primary, 1, 100))
    return tenant_a


# --- Validation -----------------------------------------------------------------------


def test_every_bad_row_is_reported_with_its_line_and_column(tenant_a, trunks_a):
    body = HEADER + "\n".join(
        [
            "33,route,serial,Carrier A/a-primary:1:100,,,,,ok,yes",  # line 2: fine
            "+44,route,serial,,,,,,,yes",  # 3
            "33a,route,serial,,,,,,,yes",  # 4
            "1" * 33 + ",route,serial,,,,,,,yes",  # 5
            "33,route,serial,,,,,,,yes",  # 6 duplicate of line 2
            "34,forward,serial,,,,,,,yes",  # 7
            "35,route,random,,,,,,,yes",  # 8
            "36,route,serial,,x,,,,,yes",  # 9
            "37,route,serial,,9,5,,,,yes",  # 10
            "3712345,route,serial,,,4,,,,yes",  # 11
            "38,reject,serial,,,,,,,yes",  # 12
            "39,reject,serial,,,,700,,,yes",  # 13
            "40,reject,serial,,,,403," + "r" * 101 + ",,yes",  # 14
            "41,route,serial,,,,,," + "d" * 201 + ",yes",  # 15
            "42,route,serial,,,,,,,maybe",  # 16
            "43,route,serial,Carrier A/nope:1:100,,,,,,yes",  # 17
            "45,route,serial,Carrier A/a-primary:one:100,,,,,,yes",  # 18
            "46,route,serial,Carrier A/a-primary:1:0,,,,,,yes",  # 19
            "47,route,serial,Carrier A/a-primary|Carrier A/a-primary,,,,,,yes",  # 20
            "48,route,serial",  # 21
        ]
    )
    with pytest.raises(ImportFailed) as failed:
        import_prefixes(text(body), tenant=tenant_a)
    assert [(e.line, e.column) for e in failed.value.errors] == [
        (3, "prefix"),
        (4, "prefix"),
        (5, "prefix"),
        (6, "prefix"),
        (7, "action"),
        (8, "routing_mode"),
        (9, "min_length"),
        (10, "min_length"),
        (11, "max_length"),
        (12, "reject_code"),
        (13, "reject_code"),
        (14, "reject_reason"),
        (15, "description"),
        (16, "is_active"),
        (17, "targets"),
        (18, "targets"),
        (19, "targets"),
        (20, "targets"),
        (21, ""),
    ]
    messages = [str(e) for e in failed.value.errors]
    assert messages[3] == "line 6, column prefix: prefix 33 is already on line 2"
    assert "no trunk 'Carrier A/nope' in this tenant" in messages[14]
    assert not DialPrefix.objects.exists()
    assert not ImportRecord.objects.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "line 1: the file is empty"),
        ("prefix,colour\n33,red\n", "line 1, column colour: unknown column"),
        ("action\nroute\n", "line 1, column prefix: the header has no prefix column"),
        ("prefix,prefix\n33,34\n", "line 1, column prefix: this column appears twice"),
    ],
)
def test_a_bad_header_is_reported(tenant_a, body, expected):
    with pytest.raises(ImportFailed) as failed:
        import_prefixes(text(body), tenant=tenant_a)
    assert str(failed.value.errors[0]).startswith(expected)


def test_a_file_that_is_not_utf8_is_refused_with_a_message(tenant_a, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"prefix,description\n33,France\n34,Espa\xf1a\n")
    with pytest.raises(CommandError):
        call_command("import_prefixes", str(path), "--tenant", "tenant-a", "--no-progress")
    with pytest.raises(ImportFailed) as failed:
        import_prefixes(lambda: path.open(encoding="utf-8", newline=""), tenant=tenant_a)
    assert "not UTF-8" in str(failed.value.errors[0])


def test_only_the_prefix_column_is_required(tenant_a):
    import_prefixes(text("prefix\n33\n"), tenant=tenant_a)
    row = DialPrefix.objects.get(tenant=tenant_a)
    assert (row.prefix, row.action, row.routing_mode, row.is_active) == (
        "33",
        "route",
        "serial",
        True,
    )


def test_targets_may_leave_out_priority_and_weight(tenant_a, trunks_a):
    import_prefixes(
        text("prefix,targets\n33,Carrier A/a-backup|Carrier A/a-primary:1\n"), tenant=tenant_a
    )
    targets = DialPrefix.objects.get(prefix="33").targets.order_by("trunk__name")
    assert [(t.trunk.name, t.priority, t.weight) for t in targets] == [
        ("a-backup", 1, 100),
        ("a-primary", 1, 100),
    ]


# --- Writing --------------------------------------------------------------------------


def test_an_import_with_one_bad_row_writes_nothing(route_a, trunks_a):
    before = table_of(route_a.tenant)
    body = HEADER + "34,route,serial,Carrier A/a-primary:1:100,,,,,,yes\n35,route,nope,,,,,,,yes\n"
    with pytest.raises(ImportFailed):
        import_prefixes(text(body), tenant=route_a.tenant, replace=True)
    assert table_of(route_a.tenant) == before


def test_a_merge_adds_and_overwrites_and_keeps_the_rest(route_a, trunks_a):
    make_route(route_a.tenant, "44", trunks_a[0])
    body = HEADER + (
        "33,reject,serial,,,,486,Busy,,yes\n34,route,serial,Carrier A/a-backup:1:100,,,,,,yes\n"
    )
    result = import_prefixes(text(body), tenant=route_a.tenant, source="merge.csv")
    assert (result.rows, result.created, result.updated, result.deleted) == (2, 1, 1, 0)
    table = {row[0]: row for row in table_of(route_a.tenant)}
    assert set(table) == {"33", "34", "44"}
    assert table["33"][1] == "reject"
    assert table["33"][-1] == []  # its old targets are gone
    record = ImportRecord.objects.get()
    assert (record.tenant, record.source, record.rows, record.created) == (
        route_a.tenant,
        "merge.csv",
        2,
        1,
    )


def test_replace_makes_the_table_exactly_the_file(varied_a, route_b):
    body = HEADER + "1,route,serial,Carrier A/a-primary:1:100,,,,,,yes\n"
    result = import_prefixes(text(body), tenant=varied_a, replace=True)
    assert (result.created, result.updated, result.deleted, result.targets) == (1, 0, 8, 1)
    assert [row[0] for row in table_of(varied_a)] == ["1"]
    assert [row[0] for row in table_of(route_b.tenant)] == ["33"]  # the other tenant untouched
    assert RouteChange.objects.filter(kind=changes.TABLE, tenant_id=varied_a.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_calls_never_see_a_half_written_table(tenant_a, trunks_a):
    make_route(tenant_a, "33", trunks_a[0])
    body = HEADER + "".join(
        f"{n},route,serial,Carrier A/a-backup:1:100,,,,,,yes\n" for n in range(40, 60)
    )
    seen: list = []

    def look() -> None:  # another connection, as another process would
        table = DatabaseRouteTable()
        calls = [CallRequest(callee=f"+{n}1234", tenant="tenant-a") for n in (33, 40, 59)]
        seen.append([resolve(call, table=table).outcome for call in calls])

    def look_and_close() -> None:
        try:
            look()
        finally:
            connection.close()  # this thread's own connection

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "writing" and done == total:  # everything written, not committed
            reader = threading.Thread(target=look_and_close)
            reader.start()
            reader.join()

    import_prefixes(text(body), tenant=tenant_a, replace=True, progress=progress)
    look()
    assert seen == [["routed", "no_route", "no_route"], ["no_route", "routed", "routed"]]


def test_export_then_import_round_trips_exactly(varied_a, tenant_b):
    exported = export_text(varied_a)
    assert exported.startswith(EXPORT_HEADER)
    before = table_of(varied_a)
    import_prefixes(text(exported), tenant=varied_a, replace=True)
    assert table_of(varied_a) == before
    assert export_text(varied_a) == exported
    # Into another tenant that names its trunks the same way: the same table.
    for trunk in ("a-primary", "a-backup"):
        make_trunk(tenant_b, trunk, carrier="Carrier A")
    make_trunk(tenant_b, "odd:name", carrier='Carrier, Quoted "Ltd"')
    import_prefixes(text(exported), tenant=tenant_b, replace=True)
    assert export_text(tenant_b) == exported


def test_export_refuses_names_the_format_cannot_carry(tenant_a):
    make_trunk(tenant_a, "a|b")
    with pytest.raises(ExportError, match=r"a\|b"):
        export_text(tenant_a)


# --- Commands -------------------------------------------------------------------------


def test_the_import_command_lists_problems_and_fails(tenant_a, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "33,route,serial,,,,,,,yes\n34,forward,serial,,,,,,,maybe\n")
    with pytest.raises(CommandError, match=r"2 problem\(s\) in bad.csv; nothing was imported"):
        call_command("import_prefixes", str(path), "--tenant", "tenant-a")
    err = capsys.readouterr().err
    assert "bad.csv: line 3, column action: 'forward'" in err
    assert "bad.csv: line 3, column is_active: 'maybe'" in err
    assert not DialPrefix.objects.exists()


def test_the_commands_export_and_import_with_a_progress_bar(varied_a, tmp_path, capsys):
    path = tmp_path / "a.csv"
    call_command("export_prefixes", "--tenant", "tenant-a", "-o", str(path))
    call_command("import_prefixes", str(path), "--tenant", "tenant-a", "--replace", "--yes")
    out = capsys.readouterr()
    assert "Imported into tenant-a, plan Default: 8 rows: 0 prefixes created, 8 overwritten" in (
        out.out
    )
    # Captured stderr is no terminal: one plain line per stage, nothing redrawn.
    assert "checking: 100%|##########| 9/9 " in out.err
    assert "writing: 100%" in out.err
    assert "\r" not in out.err
    assert path.read_text() == export_text(varied_a)


def test_the_commands_name_unknown_tenants_and_files(db, tmp_path):
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        call_command("export_prefixes", "--tenant", "nope")
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_prefixes", str(tmp_path / "missing.csv"), "--tenant", "nope")


# --- Admin ----------------------------------------------------------------------------


def upload(body: str, name: str = "table.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, body.encode(), content_type="text/csv")


def test_an_operator_imports_through_the_admin(client, operator_a, trunks_a):
    client.force_login(operator_a)
    changelist = client.get(reverse("admin:routing_dialprefix_changelist"))
    assert reverse("admin:routing_dialprefix_import") in changelist.content.decode()
    body = HEADER + "33,route,serial,Carrier A/a-primary:1:100,,,,,France,yes\n"
    response = client.post(
        reverse("admin:routing_dialprefix_import"),
        {"plan": default_plan(operator_a.tenant).pk, "file": upload(body)},
    )
    assert response.status_code == 302
    assert [row[0] for row in table_of(operator_a.tenant)] == ["33"]
    record = ImportRecord.objects.get()
    assert (record.user, record.source, record.rows) == (operator_a, "table.csv", 1)


def test_the_admin_lists_every_bad_row_and_writes_nothing(client, operator_a, trunks_a):
    client.force_login(operator_a)
    body = HEADER + "33,route,serial,Carrier A/nope:1:100,,,,,,yes\n3x,route,serial,,,,,,,yes\n"
    response = client.post(
        reverse("admin:routing_dialprefix_import"),
        {"plan": default_plan(operator_a.tenant).pk, "file": upload(body)},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was imported: 2 problems in the file" in page
    assert "<td>2</td><td>targets</td>" in page
    assert "<td>3</td><td>prefix</td>" in page
    assert not DialPrefix.objects.exists()


def test_an_outsider_cannot_import_into_or_export_another_tenant(client, outsider, route_a):
    client.force_login(outsider)
    page = client.get(reverse("admin:routing_dialprefix_import")).content.decode()
    assert "Tenant A" not in page
    response = client.post(
        reverse("admin:routing_dialprefix_import"),
        {"plan": route_a.plan_id, "file": upload(HEADER + "99,route,serial,,,,,,,yes\n")},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert [row[0] for row in table_of(route_a.tenant)] == ["33"]
    export = client.get(reverse("admin:routing_dialprefix_export"), {"plan": route_a.plan_id})
    assert export.get("Content-Type", "").startswith("text/html")
    own_plan = default_plan(outsider.tenant).pk
    own = client.get(reverse("admin:routing_dialprefix_export"), {"plan": own_plan})
    assert own["Content-Type"].startswith("text/csv")
    assert b"".join(own.streaming_content).decode() == EXPORT_HEADER


def test_a_user_without_tenant_cannot_import(client, db):
    from tests.factories import make_operator

    nobody = make_operator("nobody", None)
    client.force_login(nobody)
    response = client.get(reverse("admin:routing_dialprefix_import"))
    assert response.status_code == 403


def test_the_import_page_documents_the_format(client, superuser, tenant_a, tenant_b):
    client.force_login(superuser)
    page = client.get(reverse("admin:routing_dialprefix_import")).content.decode()
    assert "carrier/trunk:priority:weight" in page
    assert "Tenant A" in page
    assert "Tenant B" in page
    assert Path(__file__).name  # the page is served by the real admin view above


def test_an_import_without_the_right_to_skip_row_checks_still_lands(varied_a, monkeypatch):
    # Roles that may not set session_replication_role keep PostgreSQL's per-row checks.
    from routing import importing

    monkeypatch.setattr(importing, "_skip_row_fk_checks", lambda cursor: False)
    exported = export_text(varied_a)
    import_prefixes(text(exported), tenant=varied_a, replace=True)
    assert export_text(varied_a) == exported
