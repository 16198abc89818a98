"""Imports: both formats, every bad line with its number and reason, nothing half-imported."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from blocklists.importing import ImportFailed, import_entries
from blocklists.models import Blocklist, BlocklistEntry
from tests.blocklists.conftest import make_list

pytestmark = pytest.mark.django_db


def text(body: str):
    return lambda: io.StringIO(body)


def entries(blocklist: Blocklist) -> dict[str, str]:
    return dict(BlocklistEntry.objects.filter(list=blocklist).values_list("value", "match"))


def test_one_value_per_line_with_prefixes_comments_and_a_plus(tenant_a):
    fraud = make_list(tenant_a, "Fraud", "caller")
    result = import_entries(
        text("\ufeff# reported in November\n+33123456789\n\n4420*\n  900 \n"), blocklist=fraud
    )
    assert result.read == result.total == 3
    assert entries(fraud) == {"33123456789": "exact", "4420": "prefix", "900": "exact"}
    fraud.refresh_from_db()
    assert fraud.entries_count == 3


def test_csv_with_a_value_and_a_match_column(tenant_a):
    fraud = make_list(tenant_a, "Fraud", "callee")
    body = "note,value,match\nx,4420,prefix\ny,+331234,\nz,900*,\n"
    import_entries(text(body), blocklist=fraud)
    assert entries(fraud) == {"4420": "prefix", "331234": "exact", "900": "prefix"}


def test_source_lists_take_networks_and_addresses(tenant_a):
    nets = make_list(tenant_a, "Nets", "source")
    import_entries(text("203.0.113.0/24\n198.51.100.7\n2001:DB8::/32\n"), blocklist=nets)
    assert entries(nets) == {
        "203.0.113.0/24": "network",
        "198.51.100.7/32": "network",
        "2001:db8::/32": "network",
    }


def test_every_bad_line_is_listed_and_nothing_is_written(tenant_a):
    fraud = make_list(tenant_a, "Fraud", "caller", "111\n")
    body = "222\n33a4\n" + "9" * 19 + "\n222\n444*\n\n12-34\n"
    with pytest.raises(ImportFailed) as failed:
        import_entries(text(body), blocklist=fraud, replace=True)
    problems = [(error.line, error.message) for error in failed.value.errors]
    assert problems == [
        (2, "'33a4' is not digits (a leading + is allowed)"),
        (3, f"'{'9' * 19}' is too long: at most 18 digits"),
        (4, "'222' is already on line 1"),
        (7, "'12-34' is not digits (a leading + is allowed)"),
    ]
    assert entries(fraud) == {"111": "exact"}  # the old list, untouched


def test_bad_cidr_and_bad_csv_rows_are_named(tenant_a):
    nets = make_list(tenant_a, "Nets", "source")
    with pytest.raises(ImportFailed) as failed:
        import_entries(text("10.0.0.1/8\nnope\n192.0.2.0/24\n"), blocklist=nets)
    assert [(e.line, e.message[:8]) for e in failed.value.errors] == [
        (1, "bad CIDR"),
        (2, "bad CIDR"),
    ]
    assert "did you mean 10.0.0.0/8" in failed.value.errors[0].message
    fraud = make_list(tenant_a, "Fraud", "caller")
    with pytest.raises(ImportFailed) as failed:
        import_entries(text("value,match\n1,maybe\n2\n3,prefix,x\n"), blocklist=fraud)
    assert [(e.line, e.message) for e in failed.value.errors] == [
        (2, "match is 'exact' or 'prefix', not 'maybe'"),
        (3, "1 columns, the header has 2"),
        (4, "3 columns, the header has 2"),
    ]
    assert BlocklistEntry.objects.count() == 0


def test_adding_keeps_the_list_and_replacing_makes_it_the_file(tenant_a):
    fraud = make_list(tenant_a, "Fraud", "caller", "111\n222\n")
    import_entries(text("222*\n333\n"), blocklist=fraud)
    assert entries(fraud) == {"111": "exact", "222": "prefix", "333": "exact"}
    result = import_entries(text("444\n"), blocklist=fraud, replace=True)
    assert entries(fraud) == {"444": "exact"}
    assert result.total == 1


def test_an_operator_cannot_import_into_another_tenants_list(tenant_a, outsider):
    fraud = make_list(tenant_a, "Fraud", "caller")
    with pytest.raises(PermissionDenied, match="own tenant"):
        import_entries(text("111\n"), blocklist=fraud, user=outsider)
    assert entries(fraud) == {}


def test_the_command_imports_and_reports_bad_lines(tenant_a, tmp_path, capsys):
    make_list(tenant_a, "Fraud", "caller")
    good, bad = tmp_path / "good.txt", tmp_path / "bad.csv"
    good.write_text("111\n222*\n")
    bad.write_text("value\n1x\n")
    call_command("import_blocklist", "tenant-a", "Fraud", str(good))
    assert "2 entries read" in capsys.readouterr().out
    with pytest.raises(CommandError, match=r"bad.csv: line 2: '1x' is not digits"):
        call_command("import_blocklist", "tenant-a", "Fraud", str(bad), "--replace")
    with pytest.raises(CommandError, match="No blocklist 'Nope'"):
        call_command("import_blocklist", "tenant-a", "Nope", str(good))
    assert BlocklistEntry.objects.count() == 2
