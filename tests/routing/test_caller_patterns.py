"""Caller patterns on routes: an RE2 pattern the caller's digits must fully match,
checked at save, in the CSV and the API, and ranked below caller prefixes (the
precedence cases are in test_route_rules)."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from routing import translation
from routing.exporting import write_csv
from routing.importing import ImportFailed, import_prefixes
from routing.models import DialPrefix, Schedule
from routing.resolver import CallRequest, resolve
from routing.tables import DatabaseRouteTable
from tests.factories import default_plan, make_route

pytestmark = pytest.mark.django_db


def errors_of(row) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        row.full_clean()
    return caught.value.message_dict


def route(tenant, **fields) -> DialPrefix:
    return DialPrefix(tenant=tenant, plan=default_plan(tenant), prefix="44", **fields)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^(33", "is not an RE2 pattern: missing ): ^(33"),
        (r"^(33)\1$", "back-references need backtracking"),
        ("^(?=33)", "look-around needs backtracking"),
        ("3" * 201, "longer than 200 characters"),
    ],
)
def test_a_bad_pattern_is_refused_naming_the_field(tenant_a, pattern, why):
    message = " ".join(errors_of(route(tenant_a, caller_pattern=pattern))["caller_pattern"])
    assert "Caller pattern" in message
    assert why in message


def test_a_good_pattern_is_taken(tenant_a):
    route(tenant_a, caller_pattern=r"^(33|44)[67]\d{8}$").full_clean()


def test_a_route_has_a_caller_prefix_or_a_pattern_not_both(tenant_a):
    both = route(tenant_a, caller_prefix="33", caller_pattern="^33")
    assert errors_of(both)["caller_pattern"] == [
        "A route has a caller prefix or a caller pattern, not both."
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        both.save()


def test_one_route_per_pattern_and_schedule_and_overlaps_only_within_a_pattern(tenant_a):
    peak = Schedule.objects.create(tenant=tenant_a, name="Peak", periods="Mon-Fri 08:00-20:00")
    make_route(tenant_a, "44", caller_pattern="^33")
    make_route(tenant_a, "44", caller_pattern="^44")  # another pattern: another route
    with pytest.raises(IntegrityError), transaction.atomic():
        make_route(tenant_a, "44", caller_pattern="^33")
    assert "prefix and caller prefix or pattern" in str(
        errors_of(route(tenant_a, caller_pattern="^44"))
    )
    make_route(tenant_a, "44", caller_pattern="^33", schedule=peak)
    # The same schedule with another pattern is another condition: no overlap check.
    route(tenant_a, caller_pattern="^44", schedule=peak).full_clean()
    same = route(tenant_a, caller_pattern="^33", schedule=Schedule.objects.create(
        tenant=tenant_a, name="Late", periods="Fri 19:00-23:00"
    ))  # fmt: skip
    assert errors_of(same)["schedule"][0].startswith(
        "route 44 caller ~^33 (Late) overlaps route 44 caller ~^33 (Peak)"
    )


def test_each_pattern_is_compiled_once():
    translation.caller_pattern.cache_clear()
    for caller in ("3312", "4412", "3399", "x", None):
        translation.caller_pattern_matches("^33[0-9]+$", caller)
    assert translation.caller_pattern.cache_info().misses == 1


def test_the_trace_says_why_a_pattern_left_a_route_out(tenant_a, trunks_a):
    make_route(tenant_a, "44", trunks_a[0])
    make_route(tenant_a, "44", trunks_a[1], caller_pattern=r"^33\d+$")
    decision = resolve(
        CallRequest(callee="+4420", caller="+4930123", source_ip="192.0.2.10"),
        table=DatabaseRouteTable(),
    )
    assert r"route 44 caller ~^33\d+$: caller 4930123 does not match ^33\d+$" in decision.trace
    assert decision.routes[0].trunk == trunks_a[0].name
    anonymous = resolve(
        CallRequest(callee="+4420", caller="anonymous", source_ip="192.0.2.10"),
        table=DatabaseRouteTable(),
    )
    assert r"route 44 caller ~^33\d+$: caller (not a number) does not match ^33\d+$" in (
        anonymous.trace
    )


# --- CSV and API ---------------------------------------------------------------------


HEADER = "prefix,caller_prefix,caller_pattern,action,targets\n"


def load(tenant, text: str, **options):
    return import_prefixes(lambda: io.StringIO(text), tenant=tenant, **options)


def test_csv_round_trips_patterns_and_keys_routes_by_them(tenant_a, trunks_a):
    load(
        tenant_a,
        HEADER + "44,,,route,Carrier A/a-primary:1:100\n"
        '44,,"^(33|44)[67]\\d{8}$",route,Carrier A/a-backup:1:100\n'
        '44,,"^49\\d{2,5}$",route,Carrier A/a-primary:1:100\n',  # a comma: quoted
    )
    rows = DialPrefix.objects.filter(prefix="44").order_by("id")
    assert [r.caller_pattern for r in rows] == ["", r"^(33|44)[67]\d{8}$", r"^49\d{2,5}$"]
    first = io.StringIO()
    write_csv(tenant_a, first)
    assert first.getvalue().startswith("prefix,caller_prefix,caller_pattern,schedule,")
    assert "44,,^(33|44)[67]\\d{8}$,,route,serial,Carrier A/a-backup:1:100," in first.getvalue()
    assert '44,,"^49\\d{2,5}$",,route,' in first.getvalue()
    ids = list(rows.values_list("id", flat=True))
    load(tenant_a, first.getvalue())  # a merge: each route is found by its pattern
    assert (
        list(DialPrefix.objects.filter(prefix="44").order_by("id").values_list("id", flat=True))
        == ids
    )
    load(tenant_a, first.getvalue(), replace=True)
    again = io.StringIO()
    write_csv(tenant_a, again)
    assert again.getvalue() == first.getvalue()


def test_csv_refuses_bad_patterns_and_both_conditions(tenant_a, trunks_a):
    with pytest.raises(ImportFailed) as caught:
        load(
            tenant_a,
            HEADER + "44,,^(33,route,\n45,33,^33,route,\n46,,^33,route,\n46,,^33,route,\n",
        )
    errors = [(e.line, e.column, e.message) for e in caught.value.errors]
    assert errors[0][:2] == (2, "caller_pattern")
    assert "Caller pattern: '^(33' is not an RE2 pattern" in errors[0][2]
    assert errors[1] == (3, "caller_pattern", "a caller prefix or a caller pattern, not both")
    assert errors[2] == (5, "prefix", "prefix 46 caller ~^33 is already on line 4")
    assert not DialPrefix.objects.exists()


def test_the_api_takes_a_pattern_and_refuses_a_bad_one_naming_the_field(operator_a, trunks_a):
    api = APIClient()
    api.force_authenticate(operator_a)
    bad = api.post(
        "/api/v1/prefixes",
        {"prefix": "44", "caller_pattern": r"^(33)\1$", "targets": []},
        format="json",
    )
    assert bad.status_code == 400
    assert "back-references" in bad.json()["caller_pattern"][0]
    both = api.post(
        "/api/v1/prefixes",
        {"prefix": "44", "caller_prefix": "33", "caller_pattern": "^33", "targets": []},
        format="json",
    )
    assert both.status_code == 400
    assert "caller_pattern" in both.json()
    good = api.post(
        "/api/v1/prefixes",
        {"prefix": "44", "caller_pattern": r"^33\d+$", "targets": [{"trunk": trunks_a[0].pk}]},
        format="json",
    )
    assert good.status_code == 201, good.content
    assert good.json()["caller_pattern"] == r"^33\d+$"
