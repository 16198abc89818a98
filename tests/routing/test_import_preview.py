"""A replace import is previewed (counts, nothing written) and confirmed before it deletes."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from routing.importing import (
    ImportFailed,
    PreviewOutdated,
    import_prefixes,
    preview_import,
    where_it_goes,
)
from routing.models import DialPrefix, ImportRecord
from tests.factories import default_plan, make_route
from versions.publishing import publish

HEADER = "prefix,action,routing_mode,targets,description\n"


def text(body: str):
    return lambda: io.StringIO(body)


class Terminal(io.StringIO):
    """A stdin that is a terminal, with the operator's answer typed in."""

    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def table_a(tenant_a, trunks_a):
    """Tenant A's plan with 33 (two targets), 34, 35 and 36."""
    primary, backup = trunks_a
    make_route(tenant_a, "33", primary, backup, description="France")
    for prefix in ("34", "35", "36"):
        make_route(tenant_a, prefix, primary, description=f"route {prefix}")
    return tenant_a


# 33 the same, 34 another description, 35 other targets, 37 new; 36 is not in the file.
FILE = HEADER + (
    "33,route,serial,Carrier A/a-primary:1:100|Carrier A/a-backup:2:100,France\n"
    "34,route,serial,Carrier A/a-primary:1:100,Spain\n"
    "35,route,serial,Carrier A/a-backup:1:100,route 35\n"
    "37,route,serial,Carrier A/a-primary:1:100,new\n"
)


def ids_of(tenant) -> dict[str, int]:
    return dict(DialPrefix.objects.filter(tenant=tenant).values_list("prefix", "id"))


def test_the_preview_counts_what_a_replace_would_do_and_writes_nothing(table_a):
    before = ids_of(table_a)
    preview = preview_import(text(FILE), tenant=table_a, replace=True)
    assert (preview.rows, preview.deleted, preview.changed, preview.added, preview.kept) == (
        4,
        1,
        2,
        1,
        1,
    )
    assert preview.summary() == (
        "plan Default: 1 route deleted, 2 changed, 1 added (1 kept unchanged; 4 rows in the file)"
    )
    assert ids_of(table_a) == before
    assert not ImportRecord.objects.exists()


def test_a_merge_preview_deletes_nothing(table_a):
    preview = preview_import(text(FILE), tenant=table_a)
    assert (preview.deleted, preview.changed, preview.added, preview.kept) == (0, 2, 1, 1)
    assert "deleted" not in preview.summary()


def test_the_preview_of_an_empty_file_deletes_the_whole_plan(table_a, route_b):
    preview = preview_import(text("prefix\n"), tenant=table_a, replace=True)
    assert (preview.deleted, preview.added, preview.changed, preview.kept) == (4, 0, 0, 0)


def test_the_preview_reports_bad_rows_like_the_import(table_a):
    with pytest.raises(ImportFailed) as failed:
        preview_import(text(HEADER + "38,forward,serial,,\n"), tenant=table_a, replace=True)
    assert "line 2, column action" in str(failed.value.errors[0])


def test_the_preview_agrees_with_the_import(table_a):
    preview = preview_import(text(FILE), tenant=table_a, replace=True)
    result = import_prefixes(text(FILE), tenant=table_a, replace=True, expect_deleted=1)
    assert (result.deleted, result.created, result.updated) == (
        preview.deleted,
        preview.added,
        preview.changed + preview.kept,
    )
    # a second look finds nothing left to change
    again = preview_import(text(FILE), tenant=table_a, replace=True)
    assert (again.deleted, again.changed, again.added, again.kept) == (0, 0, 0, 4)


def test_a_confirmed_import_refuses_when_the_plan_changed_since_the_preview(table_a, trunks_a):
    preview = preview_import(text(FILE), tenant=table_a, replace=True)
    make_route(table_a, "38", trunks_a[0])  # meanwhile, in the admin
    before = ids_of(table_a)
    with pytest.raises(PreviewOutdated, match="would now delete 2 routes, not 1"):
        import_prefixes(text(FILE), tenant=table_a, replace=True, expect_deleted=preview.deleted)
    assert ids_of(table_a) == before
    assert not ImportRecord.objects.exists()


def test_an_outsider_cannot_preview_another_tenants_plan(table_a, outsider):
    with pytest.raises(PermissionDenied):
        preview_import(text(FILE), tenant=table_a, replace=True, user=outsider)
    assert len(ids_of(table_a)) == 4


def test_the_wording_says_whether_the_plan_is_staged(table_a):
    plan = default_plan(table_a)
    assert "not staged: the import is live as soon as it is committed" in where_it_goes(plan)
    publish(plan, force=True)
    plan.refresh_from_db()
    assert "is staged: the import writes its draft, and nothing of it is live until" in (
        where_it_goes(plan)
    )
    assert preview_import(text(FILE), tenant=table_a, replace=True).staged


# --- The command ----------------------------------------------------------------------


@pytest.fixture
def file_a(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(FILE)
    return path


def run(path, *extra, stdin=None):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_prefixes",
        str(path),
        "--tenant",
        "tenant-a",
        "--no-progress",
        *extra,
        stdin=stdin,
        stdout=out,
        stderr=err,
    )
    return out.getvalue()


def test_the_command_shows_the_preview_and_replaces_when_told_yes(table_a, file_a):
    out = run(file_a, "--replace", stdin=Terminal("yes\n"))
    assert "Plan Default is not staged: the import is live as soon as it is committed." in out
    assert "Replacing with a.csv: plan Default: 1 route deleted, 2 changed, 1 added" in out
    assert "Type yes to replace (this deletes 1 route): " in out
    assert "1 deleted" in out
    assert set(ids_of(table_a)) == {"33", "34", "35", "37"}


@pytest.mark.parametrize("answer", ["no\n", "\n", "y\n", ""])
def test_the_command_writes_nothing_unless_told_yes(table_a, file_a, answer):
    before = ids_of(table_a)
    with pytest.raises(CommandError, match="Not confirmed: nothing was imported"):
        run(file_a, "--replace", stdin=Terminal(answer))
    assert ids_of(table_a) == before


def test_without_a_terminal_the_command_refuses_to_replace_unless_given_yes(table_a, file_a):
    before = ids_of(table_a)
    with pytest.raises(CommandError, match="pass --yes to replace without the question"):
        run(file_a, "--replace", stdin=Pipe("yes\n"))
    assert ids_of(table_a) == before
    out = run(file_a, "--replace", "--yes", stdin=Pipe(""))
    assert "Type yes" not in out
    assert "1 deleted" in out
    assert set(ids_of(table_a)) == {"33", "34", "35", "37"}


def test_a_merge_asks_nothing(table_a, file_a):
    out = run(file_a, stdin=Pipe(""))
    assert "Type yes" not in out
    assert set(ids_of(table_a)) == {"33", "34", "35", "36", "37"}


def test_the_command_says_a_staged_plans_import_goes_to_the_draft(table_a, file_a):
    plan = default_plan(table_a)
    publish(plan, force=True)
    out = run(file_a, "--replace", stdin=Terminal("yes\n"))
    assert "Plan Default is staged: the import writes its draft" in out
    assert "(the draft: publish it to make it live)" in out
    plan.refresh_from_db()
    assert plan.published_version == 1  # nothing published by the import
