"""Polish: trunk labels spelled as Kamailio people do, and messages with their plurals."""

from __future__ import annotations

from django.contrib.messages import get_messages
from django.urls import reverse

from routing.models import Trunk


def test_the_trunk_form_spells_kamailio_parameters_and_sip_names(client, operator_a, trunks_a):
    client.force_login(operator_a)
    page = client.get(reverse("admin:routing_trunk_change", args=[trunks_a[0].pk]))
    form = page.context["adminform"].form
    labels = {name: form.fields[name].label for name in form.fields}
    assert labels["fr_timer"] == "fr_timer"
    assert labels["fr_inv_timer"] == "fr_inv_timer"
    assert labels["from_uri"] == "From URI"
    assert labels["rewrite_to"] == "Rewrite To URI"
    assert labels["max_cps"] == "Max CPS"
    assert "Fr inv timer" not in page.content.decode()
    assert Trunk._meta.get_field("fr_inv_timer").verbose_name == "fr_inv_timer"


def switch_off(client, user, trunks) -> list[str]:
    client.force_login(user)
    answer = client.post(
        reverse("admin:routing_trunk_changelist"),
        {"action": "disable_selected", "_selected_action": [t.pk for t in trunks]},
    )
    return [str(m) for m in get_messages(answer.wsgi_request)]


def test_the_messages_say_1_trunk_and_2_trunks(client, operator_a, trunks_a):
    assert switch_off(client, operator_a, trunks_a[:1])[-1] == "Disabled 1 trunk."
    assert switch_off(client, operator_a, trunks_a)[-1] == "Disabled 2 trunks."


def test_an_outsider_switches_off_none_of_another_tenants_trunks(client, outsider, trunks_a):
    switch_off(client, outsider, trunks_a)
    assert Trunk.objects.filter(pk__in=[t.pk for t in trunks_a], is_active=True).count() == 2
