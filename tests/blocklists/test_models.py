"""The models' rules: named constraints with messages, clean() per kind of list."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from blocklists import services
from blocklists.models import Blocklist, BlocklistEntry
from routing.models import Customer
from tests.blocklists.conftest import make_list
from tests.factories import default_plan

pytestmark = pytest.mark.django_db


def errors_of(row) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as failed:
        row.full_clean()
    return failed.value.message_dict


def test_a_list_name_is_unique_per_tenant(tenant_a, tenant_b):
    make_list(tenant_a, "Fraud", "caller")
    make_list(tenant_b, "Fraud", "caller")  # another tenant may
    errors = errors_of(Blocklist(tenant=tenant_a, name="Fraud", kind="callee"))
    assert errors["__all__"] == ["This tenant already has a blocklist with this name."]


def test_the_reply_code_is_4xx_to_6xx(tenant_a):
    assert "reply_code" in errors_of(
        Blocklist(tenant=tenant_a, name="x", kind="caller", reply_code=302)
    )
    assert "reply_code" in errors_of(
        Blocklist(tenant=tenant_a, name="x", kind="caller", reply_code=700)
    )
    listed = Blocklist(tenant=tenant_a, name="x", kind="caller")
    listed.full_clean()
    assert (listed.reply_code, listed.reply_reason) == (403, "Blocked")


def test_a_customer_list_names_a_customer_of_its_tenant(tenant_a, tenant_b):
    theirs = Customer.objects.create(
        tenant=tenant_b, name="Globex", plan=default_plan(tenant_b), account="g"
    )
    errors = errors_of(Blocklist(tenant=tenant_a, name="x", kind="caller", customer=theirs))
    assert errors["customer"] == ["Pick a customer of this tenant."]


def test_entries_are_checked_against_their_lists_kind(tenant_a):
    numbers = make_list(tenant_a, "Numbers", "caller")
    nets = make_list(tenant_a, "Nets", "source")
    assert errors_of(BlocklistEntry(list=numbers, value="12ab"))["value"] == [
        "'12ab' is not digits (a leading + is allowed)"
    ]
    assert "bad CIDR" in errors_of(BlocklistEntry(list=nets, value="300.1.1.0/24"))["value"][0]
    entry = BlocklistEntry(list=numbers, value="+4420", match="prefix")
    entry.full_clean()
    assert (entry.value, entry.match) == ("4420", "prefix")
    net = BlocklistEntry(list=nets, value="192.0.2.9")
    net.full_clean()
    assert (net.value, net.match, str(net)) == ("192.0.2.9/32", "network", "192.0.2.9/32")
    services.save_entry(user=None, entry=entry)
    duplicate = BlocklistEntry(list=numbers, value="4420", match="exact")
    assert errors_of(duplicate)["__all__"] == ["This list already has this entry."]


def test_a_list_with_entries_keeps_its_kind(tenant_a):
    fraud = make_list(tenant_a, "Fraud", "caller", "111\n")
    fraud.kind = "source"
    assert errors_of(fraud)["kind"] == ["A list with entries keeps its kind: empty it first."]
    assert str(make_list(tenant_a, "Empty", "callee")) == "Empty (callee)"
