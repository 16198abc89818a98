"""Polish found in review: times with their zone, yes/no, no empty "Change reason"
column, the list's search box takes the keyboard."""

from __future__ import annotations

import re

import pytest

from routing.models import Trunk


def test_a_trunk_history_says_yes_no_and_the_time_zone_without_an_empty_column(
    client, operator_a, trunks_a, settings
):
    settings.TIME_ZONE = "Europe/Paris"
    trunk = Trunk.objects.get(pk=trunks_a[0].pk)
    trunk.is_active = False
    trunk.save()
    client.force_login(operator_a)

    html = " ".join(
        client.get(f"/admin/routing/trunk/{trunk.pk}/history/").content.decode().split()
    )

    assert "<strong>Is active:</strong> yes &nbsp;&rarr;&nbsp;&nbsp;no" in html
    assert "True" not in html
    assert "Change reason" not in html  # no change on the page has one
    assert ">(system)</span> </td>" in html  # saved without a signed-in user
    assert "None" not in html
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T</td>", html)


def test_a_change_with_a_reason_gets_the_column(client, operator_a, trunks_a):
    trunk = Trunk.objects.get(pk=trunks_a[0].pk)
    trunk._change_reason = "carrier maintenance"
    trunk.is_active = False
    trunk.save()
    client.force_login(operator_a)

    html = client.get(f"/admin/routing/trunk/{trunk.pk}/history/").content.decode()

    assert "Change reason" in html
    assert "<td>carrier maintenance</td>" in html


def test_the_recent_changes_say_yes_no_and_the_zone(client, operator_a, trunks_a):
    trunk = Trunk.objects.get(pk=trunks_a[0].pk)
    trunk.is_active = False
    trunk.save()
    client.force_login(operator_a)

    html = client.get("/admin/recent-changes/").content.decode()

    assert "<strong>Is active</strong>: yes &rarr; no" in html
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", html)


@pytest.mark.parametrize("url", ["/admin/routing/dialprefix/", "/admin/routing/trunk/"])
def test_the_list_search_box_has_the_keyboard(client, operator_a, url):
    client.force_login(operator_a)

    assert 'id="searchbar" autofocus' in client.get(url).content.decode()


def test_the_outsider_sees_no_history_of_tenant_a(client, outsider, trunks_a):
    client.force_login(outsider)

    response = client.get(f"/admin/routing/trunk/{trunks_a[0].pk}/history/")

    assert response.status_code in (302, 404)
    assert "a-primary" not in response.content.decode()
