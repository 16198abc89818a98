"""Writing route rules: schedules and their checks through the models, services, CSV
import and export, the REST API and the admin, with the outsider checks."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from routing import services
from routing.exporting import write_csv
from routing.importing import ImportFailed, import_prefixes
from routing.models import DialPrefix, RouteTarget, Schedule
from tests.factories import default_plan, make_route

pytestmark = pytest.mark.django_db


def schedule(tenant, name="Peak", periods="Mon-Fri 08:00-20:00", **fields) -> Schedule:
    return Schedule.objects.create(
        tenant=tenant, name=name, timezone=fields.pop("timezone", "Europe/Paris"),
        periods=periods, **fields,
    )  # fmt: skip


def errors_of(row) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        row.full_clean()
    return caught.value.message_dict


# --- Schedules ------------------------------------------------------------------------


def test_a_schedule_refuses_an_unknown_time_zone(tenant_a):
    errors = errors_of(Schedule(tenant=tenant_a, name="x", timezone="Mars/Olympus"))
    assert "'Mars/Olympus' is not an IANA time zone" in errors["timezone"][0]


def test_a_schedule_refuses_an_end_before_its_start_naming_the_period(tenant_a):
    errors = errors_of(
        Schedule(tenant=tenant_a, name="x", periods="Mon-Fri 08:00-20:00; Sat 22:00-06:00")
    )
    assert (
        "period 'Sat 22:00-06:00': the end 06:00 precedes the start 22:00" in (errors["periods"][0])
    )
    assert "two periods" in errors["periods"][0]


def test_a_schedule_needs_until_after_from(tenant_a):
    at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    errors = errors_of(Schedule(tenant=tenant_a, name="x", valid_from=at, valid_until=at))
    assert "after" in str(errors)
    with pytest.raises(IntegrityError), transaction.atomic():
        Schedule.objects.create(tenant=tenant_a, name="x", valid_from=at, valid_until=at)


def test_schedule_names_are_unique_per_tenant(tenant_a, tenant_b):
    schedule(tenant_a)
    assert "already has a schedule with this name" in str(
        errors_of(Schedule(tenant=tenant_a, name="Peak"))
    )
    Schedule(tenant=tenant_b, name="Peak").full_clean()


# --- Routes ----------------------------------------------------------------------------------


def test_one_route_per_prefix_caller_prefix_and_schedule(tenant_a):
    peak = schedule(tenant_a)
    plan = default_plan(tenant_a)
    make_route(tenant_a, "44")
    make_route(tenant_a, "44", caller_prefix="33")
    make_route(tenant_a, "44", schedule=peak)
    for caller, sched in (("", None), ("33", None), ("", peak)):
        with pytest.raises(IntegrityError), transaction.atomic():
            DialPrefix.objects.create(
                tenant=tenant_a, plan=plan, prefix="44", caller_prefix=caller, schedule=sched
            )


def test_overlapping_scheduled_routes_are_refused_naming_both(tenant_a):
    peak = schedule(tenant_a)
    late = schedule(tenant_a, "Late", "Fri 19:00-23:00")
    night = schedule(tenant_a, "Night", "Mon-Fri 20:00-24:00")
    make_route(tenant_a, "44", caller_prefix="33", schedule=peak)
    route = DialPrefix(
        tenant=tenant_a, plan=default_plan(tenant_a), prefix="44", caller_prefix="33", schedule=late
    )
    message = errors_of(route)["schedule"][0]
    assert message.startswith("route 44 caller 33 (Late) overlaps route 44 caller 33 (Peak)")
    route.schedule = night
    route.full_clean()  # 20:00-24:00 starts where 08:00-20:00 ends
    # Another caller prefix or prefix is another route: no clash.
    DialPrefix(
        tenant=tenant_a, plan=default_plan(tenant_a), prefix="44", schedule=late
    ).full_clean()


def test_widening_a_schedule_into_a_siblings_window_is_refused(tenant_a):
    peak = schedule(tenant_a)
    night = schedule(tenant_a, "Night", "Mon-Fri 20:00-24:00")
    make_route(tenant_a, "44", schedule=peak)
    make_route(tenant_a, "44", schedule=night)
    night.periods = "Mon-Fri 19:00-24:00"
    assert "route 44 (Night) would overlap route 44 (Peak)" in errors_of(night)["periods"][0]


def test_a_route_or_target_cannot_use_another_tenants_schedule(tenant_a, tenant_b, trunks_a):
    theirs = schedule(tenant_b)
    route = DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="44", schedule=theirs)
    assert errors_of(route)["schedule"] == ["Pick a schedule of the route's tenant."]
    route.schedule = None
    route.save()
    with pytest.raises(services.TargetsInvalid):
        services.check_targets(route, [services.TargetSpec(trunks_a[0].pk, schedule_id=theirs.pk)])


def test_a_schedule_in_use_cannot_be_deleted(tenant_a, operator_a):
    peak = schedule(tenant_a)
    make_route(tenant_a, "44", schedule=peak)
    with pytest.raises(services.InUse):
        services.delete_row(user=operator_a, row=peak)


def test_save_route_keeps_target_schedules(tenant_a, trunks_a, operator_a):
    peak = schedule(tenant_a)
    route = DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="44")
    specs = [
        services.TargetSpec(trunks_a[0].pk, schedule_id=peak.pk),
        services.TargetSpec(trunks_a[1].pk),
    ]
    services.save_route(user=operator_a, route=route, targets=specs)
    assert dict(route.targets.values_list("trunk_id", "schedule_id")) == {
        trunks_a[0].pk: peak.pk,
        trunks_a[1].pk: None,
    }


# --- CSV ---------------------------------------------------------------------------------------

HEADER = "prefix,caller_prefix,schedule,action,targets\n"


def load(tenant, text: str, **options):
    return import_prefixes(lambda: io.StringIO(text), tenant=tenant, **options)


def test_csv_names_schedules_and_round_trips(tenant_a, trunks_a):
    schedule(tenant_a)
    schedule(tenant_a, "Night", "Mon-Fri 20:00-24:00")
    load(
        tenant_a,
        HEADER + "44,,,route,Carrier A/a-primary:1:100\n"
        "44,,Peak,route,Carrier A/a-backup:1:100@Night|Carrier A/a-primary:2:100\n"
        "44,,Night,route,Carrier A/a-primary:1:100\n"
        "44,3312,,route,Carrier A/a-backup:1:100\n",
    )
    rows = DialPrefix.objects.filter(prefix="44").order_by("id")
    assert [(r.caller_prefix, r.schedule and r.schedule.name) for r in rows] == [
        ("", None),
        ("", "Peak"),
        ("", "Night"),
        ("3312", None),
    ]
    assert RouteTarget.objects.get(prefix=rows[1], trunk=trunks_a[1]).schedule.name == "Night"
    first = io.StringIO()
    write_csv(tenant_a, first)
    assert "44,,,Peak,route,serial,Carrier A/a-backup:1:100@Night|Carrier A/a-primary:2:100" in (
        first.getvalue()
    )
    load(tenant_a, first.getvalue(), replace=True)
    again = io.StringIO()
    write_csv(tenant_a, again)
    assert again.getvalue() == first.getvalue()
    assert DialPrefix.objects.filter(prefix="44").count() == 4


def test_csv_refuses_an_unknown_schedule_with_its_line(tenant_a, trunks_a):
    with pytest.raises(ImportFailed) as failed:
        load(
            tenant_a,
            HEADER + "44,,,route,\n44,,Weekends,route,\n45,,,route,Carrier A/a-primary@Nope\n",
        )
    assert [str(e) for e in failed.value.errors] == [
        "line 3, column schedule: no schedule 'Weekends' in this tenant",
        "line 4, column targets: no schedule 'Nope' in this tenant",
    ]


def test_csv_refuses_overlapping_schedules_with_a_line_and_both_names(tenant_a):
    schedule(tenant_a)
    schedule(tenant_a, "Late", "Fri 19:00-23:00")
    with pytest.raises(ImportFailed) as failed:
        load(tenant_a, HEADER + "44,,Peak,route,\n44,,Late,route,\n")
    (error,) = failed.value.errors
    assert str(error).startswith(
        "line 3, column schedule: route 44 (Late) overlaps route 44 (Peak)"
    )
    assert not DialPrefix.objects.filter(prefix="44").exists()


def test_csv_refuses_a_duplicate_rule(tenant_a):
    with pytest.raises(ImportFailed) as failed:
        load(tenant_a, HEADER + "44,33,,route,\n44,33,,route,\n44,,,route,\n")
    assert [str(e) for e in failed.value.errors] == [
        "line 3, column prefix: prefix 44 caller 33 is already on line 2"
    ]


def test_csv_merge_keys_routes_by_rule(tenant_a):
    peak = schedule(tenant_a)
    make_route(tenant_a, "44", description="kept")
    make_route(tenant_a, "44", schedule=peak, description="old")
    load(tenant_a, "prefix,schedule,description\n44,Peak,new\n")
    assert dict(DialPrefix.objects.values_list("schedule__name", "description")) == {
        None: "kept",
        "Peak": "new",
    }


# --- REST API ---------------------------------------------------------------------------------


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_manages_schedules_and_rules(operator_a, tenant_a, trunks_a):
    api = api_as(operator_a)
    made = api.post(
        "/api/v1/schedules",
        {"name": "Peak", "timezone": "Europe/Paris", "periods": "Mon-Fri 08:00-20:00"},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["tenant"] == "tenant-a"
    peak = made.json()["id"]
    route = api.post(
        "/api/v1/prefixes",
        {
            "prefix": "44",
            "caller_prefix": "3312",
            "schedule": peak,
            "targets": [{"trunk": trunks_a[0].pk, "schedule": peak}, {"trunk": trunks_a[1].pk}],
        },
        format="json",
    )
    assert route.status_code == 201, route.content
    body = route.json()
    assert (body["caller_prefix"], body["schedule"]) == ("3312", peak)
    assert [t["schedule"] for t in body["targets"]] == [peak, None]
    assert api.get(f"/api/v1/prefixes?schedule={peak}").json()["count"] == 1


def test_the_api_refuses_bad_schedules_and_overlaps(operator_a, tenant_a):
    api = api_as(operator_a)
    bad = api.post(
        "/api/v1/schedules",
        {"name": "x", "timezone": "Nowhere/City", "periods": "Mon 20:00-08:00"},
        format="json",
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"timezone", "periods"}
    peak, late = schedule(tenant_a), schedule(tenant_a, "Late", "Fri 19:00-23:00")
    make_route(tenant_a, "44", schedule=peak)
    clash = api.post("/api/v1/prefixes", {"prefix": "44", "schedule": late.pk}, format="json")
    assert clash.status_code == 400
    assert "route 44 (Late) overlaps route 44 (Peak)" in clash.json()["schedule"][0]


def test_an_outsider_neither_sees_nor_uses_anothers_schedules(outsider, tenant_a, trunks_b):
    peak = schedule(tenant_a)
    api = api_as(outsider)
    assert api.get("/api/v1/schedules").json()["count"] == 0
    assert api.get(f"/api/v1/schedules/{peak.pk}").status_code == 404
    assert (
        api.patch(f"/api/v1/schedules/{peak.pk}", {"name": "x"}, format="json").status_code == 404
    )
    assert api.delete(f"/api/v1/schedules/{peak.pk}").status_code == 404
    used = api.post("/api/v1/prefixes", {"prefix": "44", "schedule": peak.pk}, format="json")
    assert used.status_code == 400
    assert "Invalid pk" in used.json()["schedule"][0]
    Schedule.objects.get(pk=peak.pk, name="Peak")


# --- Admin ---------------------------------------------------------------------------------------


def test_the_admin_lists_and_edits_own_schedules_only(client, operator_a, outsider, tenant_a):
    peak = schedule(tenant_a)
    client.force_login(operator_a)
    page = client.get(reverse("admin:routing_schedule_changelist"))
    assert "Peak" in page.content.decode()
    bad = client.post(
        reverse("admin:routing_schedule_add"),
        {"name": "Night", "timezone": "Europe/Paris", "periods": "Mon 22:00-06:00"},
    )
    assert bad.status_code == 200
    assert "the end 06:00 precedes the start 22:00" in bad.content.decode()
    good = client.post(
        reverse("admin:routing_schedule_add"),
        {"name": "Night", "timezone": "Europe/Paris", "periods": "Mon 22:00-24:00"},
    )
    assert good.status_code == 302
    assert Schedule.objects.get(name="Night").tenant == tenant_a
    client.force_login(outsider)
    assert "Peak" not in client.get(reverse("admin:routing_schedule_changelist")).content.decode()
    page = client.get(reverse("admin:routing_schedule_change", args=[peak.pk]))
    assert page.status_code == 302  # the admin's "does not exist" redirect


def test_the_route_form_takes_rules_and_shows_overlaps(client, operator_a, tenant_a, trunks_a):
    from tests.routing.test_admin import prefix_form

    peak, late = schedule(tenant_a), schedule(tenant_a, "Late", "Fri 19:00-23:00")
    client.force_login(operator_a)
    form = prefix_form(tenant_a.pk, "44", [(trunks_a[0].pk, 1, 100)])
    form.update({"caller_prefix": "33", "schedule": peak.pk, "targets-0-schedule": late.pk})
    assert client.post(reverse("admin:routing_dialprefix_add"), form).status_code == 302
    route = DialPrefix.objects.get(prefix="44")
    assert (route.caller_prefix, route.schedule, route.targets.get().schedule) == ("33", peak, late)
    form.update({"schedule": late.pk, "targets-0-schedule": ""})
    clash = client.post(reverse("admin:routing_dialprefix_add"), form)
    assert clash.status_code == 200
    assert "route 44 caller 33 (Late) overlaps route 44 caller 33 (Peak)" in clash.content.decode()
