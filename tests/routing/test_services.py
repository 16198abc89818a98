"""The write services: the tenant rule, the post-save check, targets matched by trunk."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from routing import services
from routing.importing import import_prefixes
from routing.models import Carrier, DialPrefix, RouteTarget, Trunk
from routing.services import TargetSpec
from tests.factories import default_plan

pytestmark = pytest.mark.django_db


def specs(*targets: tuple[Trunk, int, int]) -> list[TargetSpec]:
    return [TargetSpec(trunk.pk, priority, weight) for trunk, priority, weight in targets]


def test_a_route_is_saved_with_exactly_its_targets(operator_a, tenant_a, trunks_a):
    primary, backup = trunks_a
    route = DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="44")
    services.save_route(user=operator_a, route=route, targets=specs((primary, 1, 70)))
    first = RouteTarget.objects.get(prefix=route)
    services.save_route(
        user=operator_a, route=route, targets=specs((primary, 1, 70), (backup, 2, 100))
    )
    targets = {t.trunk_id: t for t in RouteTarget.objects.filter(prefix=route)}
    assert targets[primary.pk].pk == first.pk  # matched by trunk: same row
    assert first.history.count() == 1  # unchanged: not written again
    services.save_route(user=operator_a, route=route, targets=specs((backup, 1, 100)))
    assert list(route.targets.values_list("trunk_id", flat=True)) == [backup.pk]


def test_an_operator_cannot_write_into_another_tenant(outsider, tenant_a, trunks_a, route_a):
    with pytest.raises(PermissionDenied):
        services.save_route(
            user=outsider,
            route=DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="49"),
        )
    with pytest.raises(PermissionDenied):
        services.save_row(user=outsider, row=Carrier(tenant=tenant_a, name="Sneaky"))
    route_a.description = "hijacked"
    with pytest.raises(PermissionDenied):
        services.save_route(user=outsider, route=route_a)
    with pytest.raises(PermissionDenied):
        services.delete_row(user=outsider, row=route_a)
    assert not DialPrefix.objects.filter(prefix="49").exists()
    assert not Carrier.objects.filter(name="Sneaky").exists()
    route_a.refresh_from_db()
    assert route_a.description != "hijacked"


def test_a_target_on_another_tenants_trunk_is_refused(operator_a, tenant_a, trunks_b):
    route = DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="44")
    with pytest.raises(services.TargetsInvalid) as invalid:
        services.save_route(user=operator_a, route=route, targets=specs((trunks_b[0], 1, 100)))
    assert "another tenant" in str(invalid.value.errors[0])
    assert not DialPrefix.objects.filter(tenant=tenant_a, prefix="44").exists()


def test_the_post_save_check_rolls_back_a_write_that_reached_another_tenant(operator_a, route_b):
    def buggy_write():
        with transaction.atomic():
            route_b.description = "written by a bug"
            route_b.save()
            services.check_written(user=operator_a, rows=[route_b])

    with pytest.raises(PermissionDenied):
        buggy_write()
    route_b.refresh_from_db()
    assert route_b.description != "written by a bug"


def test_a_row_never_moves_to_another_tenant(superuser, route_a, tenant_b):
    route_a.tenant = tenant_b
    with pytest.raises(ValidationError) as invalid:
        services.save_route(user=superuser, route=route_a)
    assert "cannot move to another tenant" in str(invalid.value)


def test_routes_warn_about_trunks_that_strip_the_whole_number(operator_a, tenant_a):
    carrier = Carrier.objects.create(tenant=tenant_a, name="Stripper")
    greedy = Trunk.objects.create(carrier=carrier, name="greedy", host="g.example", strip_digits=4)
    route = DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="3361")
    warnings = services.save_route(user=operator_a, route=route, targets=specs((greedy, 1, 100)))
    assert warnings == [
        "Stripper / greedy strips 4 digits, but this route matches numbers as short as 4 digits: "
        "such calls skip it. Set a minimum length above 4, or strip fewer digits."
    ]
    route.min_length = 9
    assert services.save_route(user=operator_a, route=route) == []


def test_a_route_without_targets_is_saved_with_a_warning(operator_a, tenant_a):
    route = DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="44")
    assert services.save_route(user=operator_a, route=route, targets=[]) == [
        "This route has no target: its calls fall back to a shorter prefix."
    ]


def test_a_row_in_use_names_what_uses_it(operator_a, route_a, trunks_a):
    with pytest.raises(services.InUse) as in_use:
        services.delete_row(user=operator_a, row=trunks_a[0])
    assert "still in use by: 33" in str(in_use.value)


def test_bulk_switching_touches_only_the_users_rows(operator_a, route_a, route_b):
    count = services.set_active(user=operator_a, queryset=DialPrefix.objects.all(), active=False)
    assert count == 1
    route_b.refresh_from_db()
    assert route_b.is_active


def test_an_operator_cannot_import_into_another_tenant(outsider, tenant_a):
    with pytest.raises(PermissionDenied):
        import_prefixes(lambda: io.StringIO("prefix\n33\n"), tenant=tenant_a, user=outsider)
    assert not DialPrefix.objects.exists()
