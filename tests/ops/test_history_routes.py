"""A route's history page: its targets' changes and the imports that wrote it."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from routing.importing import import_prefixes
from routing.models import DialPrefix, RouteTarget
from tests.factories import make_route

HEADER = "prefix,action,routing_mode,targets,description\n"


def history_of(prefix_id: int) -> str:
    return reverse("admin:routing_dialprefix_history", args=[prefix_id])


def text(body: str):
    return lambda: io.StringIO(body)


def entries(response) -> list:
    assert response.status_code == 200
    return list(response.context["changes"])


def test_a_prefix_history_includes_its_targets_changes_newest_first(client, operator_a, trunks_a):
    primary, backup = trunks_a
    route = make_route(operator_a.tenant, "33", primary, description="France")
    target = route.targets.get()
    target.weight = 70
    target.save()
    second = RouteTarget.objects.create(prefix=route, trunk=backup, priority=2, weight=30)
    second.delete()
    route.description = "France, mobile"
    route.save()
    client.force_login(operator_a)
    found = entries(client.get(history_of(route.pk)))
    assert [(c.kind, c.action) for c in found] == [
        ("dial prefix", "changed"),
        ("route target", "deleted"),
        ("route target", "created"),
        ("route target", "changed"),
        ("route target", "created"),
        ("dial prefix", "created"),
    ]
    assert [c.when for c in found] == sorted((c.when for c in found), reverse=True)
    weight = found[3].changes
    assert [(d["field"], str(d["old"]), str(d["new"])) for d in weight] == [("Weight", "100", "70")]
    page = client.get(history_of(route.pk)).content.decode()
    assert "a-backup" in page  # the deleted target is named
    assert "France, mobile" in page


def test_an_import_is_the_latest_entry_of_the_routes_it_overwrote(client, operator_a, trunks_a):
    route = make_route(operator_a.tenant, "33", trunks_a[0], description="France")
    route.description = "edited by hand"
    route.save()
    result = import_prefixes(
        text(HEADER + "33,route,serial,Carrier A/a-backup:1:100,France via import\n"),
        tenant=operator_a.tenant,
        source="wholesale.csv",
        user=operator_a,
    )
    record = result.record
    route.refresh_from_db()
    assert route.last_import == record
    client.force_login(operator_a)
    response = client.get(history_of(route.pk))
    found = entries(response)
    latest = found[0]
    assert latest.kind == "import"
    assert latest.action == (
        f"written by import #{record.pk} (wholesale.csv, operator-a, "
        f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    assert "the route is as this import left it" in latest.reason
    assert {d["field"]: (d["old"], d["new"]) for d in latest.changes} == {
        "Description": ("edited by hand", "France via import"),
        "Targets": (
            "Carrier A / a-primary (priority 1, weight 100)",
            "Carrier A / a-backup (priority 1, weight 100)",
        ),
    }
    # the hand edit is history now, and the old target was replaced by the import
    assert [(c.kind, c.action) for c in found[1:]] == [
        ("route target", "deleted"),
        ("dial prefix", "changed"),
        ("route target", "created"),
        ("dial prefix", "created"),
    ]
    assert found[1].reason.startswith(f"replaced by import #{record.pk} (wholesale.csv")
    page = response.content.decode()
    assert f'href="/admin/recent-changes/?kind=import#import-{record.pk}"' in page
    imports = client.get(reverse("ops:recent-changes"), {"kind": "import"}).content.decode()
    assert f'id="import-{record.pk}"' in imports


def test_an_edit_after_the_import_is_the_current_state_again(client, operator_a, trunks_a):
    route = make_route(operator_a.tenant, "33", trunks_a[0], description="France")
    import_prefixes(text(HEADER + "33,route,serial,,imported\n"), tenant=operator_a.tenant)
    route.refresh_from_db()
    route.description = "after the import"
    route.save()
    client.force_login(operator_a)
    found = entries(client.get(history_of(route.pk)))
    assert (found[0].kind, found[0].action) == ("dial prefix", "changed")
    assert found[0].reason == f"(these changes include those of import #{route.last_import_id})"
    assert [d["field"] for d in found[0].changes] == ["Description"]  # no "last import"
    assert found[1].kind == "import"
    assert "what it wrote is not kept" in found[1].reason


def test_a_route_an_import_created_has_a_history(client, operator_a, trunks_a):
    import_prefixes(
        text(HEADER + "44,route,serial,Carrier A/a-primary:1:100,UK\n"),
        tenant=operator_a.tenant,
        source="uk.csv",
    )
    route = DialPrefix.objects.get(prefix="44")
    client.force_login(operator_a)
    found = entries(client.get(history_of(route.pk)))
    assert len(found) == 1
    assert found[0].action.startswith(f"written by import #{route.last_import_id} (uk.csv, ")
    assert "the command line" in found[0].action


def test_a_route_a_replace_deleted_says_so(client, operator_a, trunks_a):
    route = make_route(operator_a.tenant, "33", trunks_a[0])
    result = import_prefixes(
        text(HEADER + "44,route,serial,,\n"), tenant=operator_a.tenant, replace=True
    )
    assert not DialPrefix.objects.filter(pk=route.pk).exists()
    client.force_login(operator_a)
    found = entries(client.get(history_of(route.pk)))
    assert (found[0].kind, found[0].action) == ("dial prefix", "deleted")
    assert found[0].reason.startswith(f"removed by import #{result.record.pk}")


@pytest.mark.parametrize("deleted", [False, True])
def test_an_outsider_never_sees_a_routes_history_nor_its_imports(
    client, operator_a, outsider, trunks_a, deleted
):
    route = make_route(operator_a.tenant, "33", trunks_a[0], description="secret A")
    import_prefixes(
        text(HEADER + "33,route,serial,,secret import\n"),
        tenant=operator_a.tenant,
        source="a-only.csv",
        replace=True,
    )
    if deleted:
        import_prefixes(text(HEADER), tenant=operator_a.tenant, replace=True)
    client.force_login(outsider)
    response = client.get(history_of(route.pk))
    assert response.status_code == 404
    assert b"a-only.csv" not in response.content
    page = client.get(reverse("ops:recent-changes")).content.decode()
    assert "a-only.csv" not in page
    assert "secret" not in page
