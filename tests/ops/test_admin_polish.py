"""The admin reads well: help on every field, empty lists say what to do, status at a glance."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from ops.history import TRACKED_MODELS


def admin_forms(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    for model in TRACKED_MODELS:
        if model in admin.site._registry:
            model_admin = admin.site._registry[model]
            yield model.__name__, model_admin.get_form(request)
            for inline in model_admin.get_inline_instances(request):
                yield f"{model.__name__} inline", inline.get_formset(request).form


@pytest.mark.parametrize("who", ["superuser", "operator_a"])
def test_every_field_of_every_route_table_form_has_help(request, who):
    user = request.getfixturevalue(who)
    bare = [
        f"{where}.{name}"
        for where, form in admin_forms(user)
        for name, field in form.base_fields.items()
        if not field.help_text and not field.widget.is_hidden and name != "id"
    ]
    assert bare == []


def test_an_empty_carrier_list_says_what_to_do_first(client, operator_a):
    client.force_login(operator_a)

    html = client.get("/admin/routing/carrier/").content.decode()

    assert 'id="empty-state"' in html
    assert "No carrier yet. Start here" in html


def test_a_search_without_results_is_not_mistaken_for_an_empty_table(client, operator_a):
    client.force_login(operator_a)

    html = client.get("/admin/routing/carrier/", {"q": "nothing-like-this"}).content.decode()

    assert 'id="empty-state"' not in html


def test_a_tenant_with_carriers_sees_no_empty_state_and_the_outsider_still_does(
    client, operator_a, outsider, trunks_a
):
    client.force_login(operator_a)
    assert 'id="empty-state"' not in client.get("/admin/routing/carrier/").content.decode()
    client.force_login(outsider)
    assert 'id="empty-state"' in client.get("/admin/routing/carrier/").content.decode()


def test_trunk_and_target_status_show_at_a_glance(client, operator_a, trunks_a, route_a):
    primary, _ = trunks_a
    primary.is_active = False
    primary.save()
    client.force_login(operator_a)

    carriers = client.get("/admin/routing/carrier/").content.decode()
    prefixes = client.get("/admin/routing/dialprefix/").content.decode()

    assert "1/2 active: a-backup (a-backup.example.net), a-primary (off)" in carriers
    assert '<s class="ro-off" title="trunk inactive">a-primary</s>' in prefixes


def test_help_texts_show_angle_brackets_as_typed(client, operator_a, trunks_a):
    client.force_login(operator_a)
    example = "&lt;sip:{caller}@trunk.example.net&gt;"

    trunk = client.get(f"/admin/routing/trunk/{trunks_a[0].pk}/change/").content.decode()
    carrier = client.get(
        f"/admin/routing/carrier/{trunks_a[0].carrier_id}/change/"
    ).content.decode()

    assert example in trunk
    assert "<sip:{caller}" not in trunk
    assert carrier.count(example) >= 2  # the trunk inline's rows and its empty form
    assert "<sip:{caller}" not in carrier
