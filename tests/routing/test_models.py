"""Every invariant rejects bad data with a clear message, in clean() and in the database."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from routing.models import Carrier, DialPrefix, RouteTarget, Trunk
from tests.factories import default_plan, make_route, make_trunk

pytestmark = pytest.mark.django_db


def messages_of(obj) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        obj.full_clean()
    return info.value.message_dict


def test_carrier_names_are_unique_per_tenant(tenant_a, tenant_b):
    Carrier.objects.create(tenant=tenant_a, name="Voxi")
    assert "This tenant already has a carrier with this name." in str(
        messages_of(Carrier(tenant=tenant_a, name="Voxi"))
    )
    Carrier(tenant=tenant_b, name="Voxi").full_clean()  # another tenant may use the name
    with pytest.raises(IntegrityError), transaction.atomic():
        Carrier.objects.create(tenant=tenant_a, name="Voxi")


def test_trunk_names_are_unique_per_carrier(tenant_a):
    trunk = make_trunk(tenant_a, "t1")
    duplicate = Trunk(carrier=trunk.carrier, name="t1", host="h.example")
    assert "This carrier already has a trunk with this name." in str(messages_of(duplicate))


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"port": 0}, "port", "greater than or equal to 1"),
        ({"port": 70000}, "port", "less than or equal to 65535"),
        ({"host": "sip.example.net:5060"}, "host", "give the port in the port field"),
        ({"host": "bad host!"}, "host", "not a valid host name"),
        ({"host": "999.1.1.1"}, "host", "not a valid host name"),
        ({"transport": "sctp"}, "transport", "not a valid choice"),
        ({"outbound_proxy": "proxy.example.net"}, "outbound_proxy", "not a SIP URI"),
        ({"socket": "udp:1.2.3.4"}, "socket", "not a Kamailio socket"),
        ({"tech_prefix": "12a"}, "tech_prefix", "digits, '*' and '#'"),
        ({"strip_digits": 16}, "strip_digits", "less than or equal to 15"),
        ({"from_uri": "sip:{user}@x"}, "from_uri", "Unknown placeholder {user}"),
        ({"from_uri": "alice@x"}, "from_uri", "it must start with sip: or sips:"),
        ({"from_uri": "sip:"}, "from_uri", "it has no host"),
        ({"from_uri": "sip:{caller}@"}, "from_uri", "it has no host"),
        ({"from_uri": "<sip:{caller}@x>"}, "from_uri", "without < >"),
        ({"from_uri": "sip:a b@x"}, "from_uri", "check it for spaces"),
        ({"from_uri": "alice@x"}, "from_uri", "write it like sip:{caller}@trunk.example.net"),
        ({"from_display": "A\r\nB"}, "from_display", "Line breaks"),
        ({"extra_headers": "X-Ok: 1\nnot a header"}, "extra_headers", "Line 2"),
        ({"extra_headers": "Via: SIP/2.0/UDP x"}, "extra_headers", "Kamailio manages itself"),
        ({"extra_headers": "X-Empty:"}, "extra_headers", "has no value"),
        ({"fr_timer": 0}, "fr_timer", "fr_timer must be more than 0 ms"),
    ],
)
def test_trunk_fields_reject_bad_values_with_a_message(tenant_a, fields, field, message):
    carrier = Carrier.objects.create(tenant=tenant_a, name="C")
    trunk = Trunk(carrier=carrier, name="t", **{"host": "sip.example.net", **fields})
    errors = messages_of(trunk)
    assert message in " ".join(errors.get(field, []) + errors.get("__all__", [])), errors


@pytest.mark.parametrize("host", ["sip.example.net", "192.0.2.1", "2001:db8::1", "[2001:db8::1]"])
def test_trunk_hosts_may_be_names_or_addresses(tenant_a, host):
    carrier = Carrier.objects.create(tenant=tenant_a, name="C")
    trunk = Trunk(carrier=carrier, name="t", host=host)
    trunk.full_clean()
    assert trunk.host == host.strip("[]")


@pytest.mark.parametrize(
    "from_uri",
    [
        "sip:{caller}@trunk.example.net",
        "sip:+{caller}@acme.example",
        "sips:{callee}@[2001:db8::1]:5061;user=phone",
        "sip:trunk.example.net",
    ],
)
def test_trunk_from_uris_are_sip_uris_with_placeholders(tenant_a, from_uri):
    carrier = Carrier.objects.create(tenant=tenant_a, name="C")
    Trunk(carrier=carrier, name="t", host="sip.example.net", from_uri=from_uri).full_clean()


@pytest.mark.parametrize(
    ("constraint_field", "value"),
    [("port", 0), ("fr_timer", 0), ("fr_inv_timer", 0), ("strip_digits", 20)],
)
def test_the_database_refuses_what_clean_would(tenant_a, constraint_field, value):
    trunk = make_trunk(tenant_a, "t")
    setattr(trunk, constraint_field, value)
    with pytest.raises(IntegrityError), transaction.atomic():
        trunk.save()


def test_prefixes_are_unique_per_tenant(tenant_a, tenant_b):
    make_route(tenant_a, "33")
    errors = messages_of(DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="33"))
    assert "already has an unscheduled route for this prefix and caller prefix" in str(errors)
    DialPrefix(tenant=tenant_b, plan=default_plan(tenant_b), prefix="33").full_clean()


@pytest.mark.parametrize("prefix", ["+33", "33 6", "3a", "33-", "٣٣", "３３"])
def test_prefixes_are_digits_only(tenant_a, prefix):
    assert "Use digits only" in str(
        messages_of(DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix=prefix))
    )


def test_length_bounds_must_be_ordered_and_reachable(tenant_a):
    errors = messages_of(
        DialPrefix(
            tenant=tenant_a, plan=default_plan(tenant_a), prefix="33", min_length=12, max_length=10
        )
    )
    assert "The minimum length cannot exceed the maximum length." in str(errors)
    errors = messages_of(
        DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="33612", max_length=4)
    )
    assert "No number of at most 4 digits" in str(errors["max_length"])
    with pytest.raises(IntegrityError), transaction.atomic():
        DialPrefix.objects.create(tenant=tenant_a, prefix="1", min_length=9, max_length=3)


def test_reject_routes_need_a_sip_error_code(tenant_a):
    errors = messages_of(
        DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix="1", action="reject")
    )
    assert "A reject route needs a SIP code" in str(errors)
    errors = messages_of(
        DialPrefix(
            tenant=tenant_a,
            plan=default_plan(tenant_a),
            prefix="1",
            action="reject",
            reject_code=200,
        )
    )
    assert "greater than or equal to 400" in str(errors["reject_code"])
    with pytest.raises(IntegrityError), transaction.atomic():
        DialPrefix.objects.create(tenant=tenant_a, prefix="1", action="reject", reject_code=302)


def test_target_weights_are_positive_and_trunks_unique_per_route(tenant_a, trunks_a):
    route = make_route(tenant_a, "33", trunks_a[0])
    errors = messages_of(RouteTarget(prefix=route, trunk=trunks_a[1], weight=0))
    assert "greater than or equal to 1" in str(errors["weight"])
    errors = messages_of(RouteTarget(prefix=route, trunk=trunks_a[0]))
    assert "This trunk is already a target of this route." in str(errors)
    with pytest.raises(IntegrityError), transaction.atomic():
        RouteTarget.objects.create(prefix=route, trunk=trunks_a[1], weight=0)


def test_a_target_cannot_use_another_tenants_trunk(tenant_a, trunks_b):
    route = make_route(tenant_a, "33")
    errors = messages_of(RouteTarget(prefix=route, trunk=trunks_b[0]))
    assert "belongs to another tenant" in str(errors["trunk"])


def test_models_read_well_as_text(tenant_a, trunks_a):
    route = make_route(tenant_a, "33", trunks_a[0])
    assert str(trunks_a[0]) == "Carrier A / a-primary"
    assert str(route) == "33"
    assert (
        str(DialPrefix(tenant=tenant_a, plan=default_plan(tenant_a), prefix=""))
        == "(default route)"
    )
    assert str(route.targets.get()) == "33 → Carrier A / a-primary (priority 1, weight 100)"


@pytest.mark.parametrize("codes", ["200", "5x", "abc", "5xx;408", "700"])
def test_failover_codes_are_sip_codes_or_classes(trunks_a, codes):
    trunk = trunks_a[0]
    trunk.failover_codes = codes
    with pytest.raises(ValidationError, match="write SIP codes from 300 to 699 or classes"):
        trunk.full_clean()
    trunk.failover_codes = "5xx, 408 486"
    trunk.full_clean()
