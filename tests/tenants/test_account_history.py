"""Changes to users, groups and tokens are recorded (who, when), never their secrets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, update_last_login

from api.models import KamailioToken
from tenants.models import User

pytestmark = pytest.mark.django_db


def test_a_users_changes_are_recorded_without_the_password(operator_a):
    operator_a.set_password("a-new-secret-password")
    operator_a.is_staff = False
    operator_a.save()

    latest = operator_a.history.first()
    fields = {f.name for f in latest._meta.fields}
    assert latest.is_staff is False
    assert "password" not in fields
    assert "last_login" not in fields


def test_a_login_is_not_a_change(operator_a):
    before = operator_a.history.count()

    update_last_login(None, operator_a)

    assert operator_a.history.count() == before


def test_group_membership_and_group_permissions_are_recorded(operator_a):
    auditors = Group.objects.create(name="Auditors")
    auditors.permissions.add(Permission.objects.get(codename="view_trunk"))
    operator_a.groups.add(auditors)

    assert list(
        auditors.history.first().permissions.values_list("permission__codename", flat=True)
    ) == ["view_trunk"]
    assert "Auditors" in {m.group.name for m in operator_a.history.first().groups.all()}


def test_the_admin_changes_of_a_user_are_in_its_history_with_who(client, superuser, operator_a):
    client.force_login(superuser)
    data = {
        "username": "operator-a",
        "tenant": operator_a.tenant_id,
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": "2024-01-01",
        "date_joined_1": "00:00:00",
    }
    client.post(f"/admin/tenants/user/{operator_a.pk}/change/", data)

    page = client.get(f"/admin/tenants/user/{operator_a.pk}/history/")

    assert page.status_code == 200
    assert operator_a.history.first().history_user == superuser
    assert operator_a.password.split("$")[0] == "md5"
    assert operator_a.password not in page.content.decode()


def test_groups_and_tokens_have_a_history_page_for_superusers(client, superuser):
    group = Group.objects.create(name="Auditors")
    token = KamailioToken(name="edge")
    token.set_new_key()
    token.save()
    client.force_login(superuser)

    pages = [
        client.get(f"/admin/auth/group/{group.pk}/history/"),
        client.get(f"/admin/api/kamailiotoken/{token.pk}/history/"),
    ]

    assert [p.status_code for p in pages] == [200, 200]
    assert token.key_digest not in pages[1].content.decode()


def test_a_kamailio_tokens_history_holds_no_digest_and_says_when_it_was_rekeyed(client, superuser):
    token = KamailioToken(name="edge")
    token.set_new_key()
    token.save()
    client.force_login(superuser)

    client.post(
        "/admin/api/kamailiotoken/",
        {"action": "reissue_key", "_selected_action": [token.pk]},
    )

    latest = token.history.first()
    assert latest.history_change_reason == "New key issued"
    assert latest.history_user == superuser
    assert "key_digest" not in {f.name for f in latest._meta.fields}


def test_operators_see_no_user_group_or_token_history(client, operator_a, outsider):
    group = Group.objects.create(name="Auditors")
    token = KamailioToken(name="edge")
    token.set_new_key()
    token.save()
    client.force_login(outsider)

    pages = [
        client.get(f"/admin/tenants/user/{operator_a.pk}/history/"),
        client.get(f"/admin/auth/group/{group.pk}/history/"),
        client.get(f"/admin/api/kamailiotoken/{token.pk}/history/"),
    ]

    assert [p.status_code for p in pages] == [403, 403, 403]
    assert User.objects.filter(pk=operator_a.pk).exists()
