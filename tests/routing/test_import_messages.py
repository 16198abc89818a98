"""Import errors say the line, the column and, in the targets column, which target and
which part of it is wrong."""

from __future__ import annotations

import io

import pytest

from routing.importing import ImportFailed, import_prefixes


def errors_of(tenant, body: str) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        import_prefixes(lambda: io.StringIO(body), tenant=tenant)
    return [str(error) for error in failed.value.errors]


def test_a_bad_target_is_named_by_position_and_part(tenant_a, trunks_a):
    body = (
        "prefix,targets\n"
        "33,Carrier A/a-primary:1:100|Carrier A/a-backup:2:0\n"
        "34,Carrier A/a-primary:x:100\n"
        "35,Carrier A/a-primary:40000\n"
        "36,abc\n"
    )
    assert errors_of(tenant_a, body) == [
        "line 2, column targets: target 2 ('Carrier A/a-backup:2:0'): weight 0 is not 1-32767; "
        "write carrier/trunk:priority:weight, priority 0-32767, weight 1-32767",
        "line 3, column targets: target 1 ('Carrier A/a-primary:x:100'): 'x' is not a number; "
        "write carrier/trunk:priority:weight, priority 0-32767, weight 1-32767",
        "line 4, column targets: target 1 ('Carrier A/a-primary:40000'): priority 40000 is not "
        "0-32767; write carrier/trunk:priority:weight, priority 0-32767, weight 1-32767",
        "line 5, column targets: no trunk 'abc' in this tenant (carrier/trunk)",
    ]


def test_a_bad_cell_names_its_column(tenant_a, trunks_a):
    messages = errors_of(tenant_a, "prefix,is_active,max_length\n33,maybe,7\n34,yes,x\n")
    assert messages[0].startswith("line 2, column is_active: ")
    assert messages[1].startswith("line 3, column max_length: ")


def test_an_outsider_tenants_trunk_is_not_a_target(tenant_b, trunks_a):
    assert errors_of(tenant_b, "prefix,targets\n33,Carrier A/a-primary\n") == [
        "line 2, column targets: no trunk 'Carrier A/a-primary' in this tenant (carrier/trunk)"
    ]
