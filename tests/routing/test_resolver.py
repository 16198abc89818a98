"""The resolver's case table, run through the real database route table."""

from __future__ import annotations

import pytest

from kamailio.rtjson import to_rtjson
from routing.resolver import CallRequest, Outcome
from routing.service import decide
from tests.factories import default_plan, make_route, make_tenant, make_trunk

pytestmark = pytest.mark.django_db


def call(callee: str, source_ip: str = "192.0.2.10", **fields):
    return decide(CallRequest(callee=callee, source_ip=source_ip, **fields))


def trunk_names(decision) -> list[str]:
    return [route.trunk for route in decision.routes]


def test_the_longest_matching_prefix_wins(tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "33", primary)
    make_route(tenant_a, "336", backup)
    decision = call("+33612345678")
    assert decision.outcome == Outcome.ROUTED
    assert decision.matched.prefix == "336"
    assert [row.prefix for row in decision.beaten] == ["33"]
    assert trunk_names(decision) == ["a-backup"]
    assert trunk_names(call("+33123456789")) == ["a-primary"]


@pytest.mark.parametrize(
    ("callee", "expected"),
    [
        ("+33 6 12 34 56 78", "336"),
        ("+33-6-12-34-56-78", "336"),
        ("(+33) 6.12.34.56.78", "336"),
        ("33612345678", "336"),
        ("+33 1 23 45 67 89", "33"),
    ],
)
def test_numbers_match_without_plus_spaces_or_dashes(tenant_a, trunks_a, callee, expected):
    make_route(tenant_a, "33", trunks_a[0])
    make_route(tenant_a, "336", trunks_a[1])
    assert call(callee).matched.prefix == expected


def test_the_r_uri_keeps_the_plus_as_dialled(tenant_a, trunks_a):
    make_route(tenant_a, "33", trunks_a[0])
    decision = call("+33 1 23 45 67 89")
    assert decision.routes[0].uri == "sip:+33123456789@192.0.2.101:5060"


def test_length_bounds_decide_between_routes(tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "44", primary, min_length=12, max_length=12)
    make_route(tenant_a, "4", backup)
    assert call("447700900123").matched.prefix == "44"
    short = call("4477009001")
    assert short.matched.prefix == "4"
    assert any("needs at least 12 digits" in step for step in short.trace)
    assert call("4477009001234").matched.prefix == "4"


def test_no_matching_prefix_is_404_no_route(tenant_a, trunks_a):
    make_route(tenant_a, "33", trunks_a[0])
    decision = call("+49301234567")
    assert (decision.outcome, decision.code, decision.reason) == (
        Outcome.NO_ROUTE,
        404,
        "No Route",
    )
    document = to_rtjson(decision)
    assert document["success"] is False
    assert (document["code"], document["routes"]) == (404, [])


def test_the_empty_prefix_is_a_default_route(tenant_a, trunks_a):
    make_route(tenant_a, "", trunks_a[1])
    make_route(tenant_a, "33", trunks_a[0])
    assert trunk_names(call("+49301234567")) == ["a-backup"]
    assert trunk_names(call("+33123456789")) == ["a-primary"]


def test_priority_orders_targets_and_failover_keeps_them_all(tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "33", (backup, 2, 100), (primary, 1, 100))
    decision = call("+33123456789")
    assert decision.routing == "serial"
    assert trunk_names(decision) == ["a-primary", "a-backup"]


def test_equal_priorities_share_calls_by_weight_and_a_call_keeps_its_order(tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "33", (primary, 1, 80), (backup, 1, 20))
    firsts = [call("+33123456789", call_id=f"call-{n}@pbx").routes[0].trunk for n in range(400)]
    share = firsts.count("a-primary") / len(firsts)
    assert 0.7 < share < 0.9, share
    again = [trunk_names(call("+33123456789", call_id="fixed@pbx")) for _ in range(5)]
    assert all(order == again[0] for order in again)


@pytest.mark.parametrize("what", ["trunk", "carrier"])
def test_inactive_trunks_and_carriers_are_skipped(tenant_a, what):
    dead = make_trunk(tenant_a, "dead", carrier="Dead Carrier")
    alive = make_trunk(tenant_a, "alive", carrier="Live Carrier")
    make_route(tenant_a, "33", dead, alive)
    target = dead if what == "trunk" else dead.carrier
    target.is_active = False
    target.save()
    decision = call("+33123456789")
    assert trunk_names(decision) == ["alive"]
    assert len(decision.skipped) == 1
    assert "inactive" in decision.skipped[0]


def test_a_route_whose_trunks_are_all_inactive_is_503(tenant_a, trunks_a):
    make_route(tenant_a, "33", *trunks_a)
    for trunk in trunks_a:
        trunk.is_active = False
        trunk.save()
    decision = call("+33123456789")
    assert (decision.outcome, decision.code) == (Outcome.NO_ROUTE, 503)


def test_a_route_with_no_usable_trunk_falls_back_to_a_shorter_prefix(tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "33", backup)
    make_route(tenant_a, "336", primary)
    make_route(tenant_a, "3361", primary)
    primary.is_active = False
    primary.save()
    decision = call("+33612345678")
    assert (decision.outcome, decision.matched.prefix) == (Outcome.ROUTED, "33")
    assert trunk_names(decision) == ["a-backup"]
    assert decision.skipped == (
        "Carrier A/a-primary: trunk is inactive",
        "Carrier A/a-primary: trunk is inactive",
    )
    assert "prefix 3361 has no usable target: falling back to 336 (route)" in decision.trace
    assert "prefix 336 has no usable target: falling back to 33 (route)" in decision.trace


def test_a_final_route_answers_503_instead_of_falling_back(tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "33", backup)
    make_route(tenant_a, "336", primary, is_final=True)
    primary.is_active = False
    primary.save()
    decision = call("+33612345678")
    assert (decision.outcome, decision.code, decision.matched.prefix) == (
        Outcome.NO_ROUTE,
        503,
        "336",
    )
    assert "prefix 336 is final: no fallback to the next route" in decision.trace


def test_a_fallback_takes_the_shorter_routes_action(tenant_a, trunks_a):
    make_route(tenant_a, "", action="reject", reject_code=404, reject_reason="Not Here")
    make_route(tenant_a, "33", trunks_a[0])
    trunks_a[0].carrier.is_active = False
    trunks_a[0].carrier.save()
    decision = call("+33612345678")
    assert (decision.outcome, decision.code, decision.reason) == (
        Outcome.REJECTED,
        404,
        "Not Here",
    )


def test_a_trunk_that_strips_the_whole_number_is_skipped(tenant_a):
    short = make_trunk(tenant_a, "short", strip_digits=11)
    fine = make_trunk(tenant_a, "fine", strip_digits=2)
    make_route(tenant_a, "33", short, fine)
    decision = call("+33612345678")  # 11 digits
    assert [route.uri for route in decision.routes] == ["sip:612345678@fine.example.net"]
    assert decision.skipped == ("Carrier/short: strips 11 digits and the number has only 11",)
    only_short = call("+3361234567890", source_ip="192.0.2.10")  # 13 digits: usable
    assert trunk_names(only_short)[0] in {"short", "fine"}


def test_an_inactive_route_is_skipped_for_a_shorter_one(tenant_a, trunks_a):
    make_route(tenant_a, "33", trunks_a[0])
    make_route(tenant_a, "336", trunks_a[1], is_active=False)
    decision = call("+33612345678")
    assert decision.matched.prefix == "33"
    assert "prefix 336 is inactive" in decision.trace


def test_a_reject_route_answers_its_code_and_reason(tenant_a):
    make_route(tenant_a, "1900", action="reject", reject_code=403, reject_reason="Premium barred")
    decision = call("+19005551234")
    assert (decision.outcome, decision.code, decision.reason) == (
        Outcome.REJECTED,
        403,
        "Premium barred",
    )
    assert to_rtjson(decision)["prefix"] == "1900"


def test_a_location_route_answers_routing_location(tenant_a):
    make_route(tenant_a, "2", action="location", min_length=4, max_length=4)
    decision = call("2001")
    assert decision.outcome == Outcome.LOCATION
    document = to_rtjson(decision)
    assert (document["success"], document["routing"], document["routes"]) == (
        True,
        "location",
        [],
    )


def test_parallel_routes_fork_to_all_targets(tenant_a, trunks_a):
    make_route(tenant_a, "44", *trunks_a, routing_mode="parallel")
    document = to_rtjson(call("+447700900123"))
    assert document["routing"] == "parallel"
    assert len(document["routes"]) == 2


@pytest.mark.parametrize("source_ip", ["203.0.113.9", "2001:db8:ffff::1", "not-an-ip", "", None])
def test_an_unknown_source_is_refused_with_403(tenant_a, route_a, source_ip):
    decision = call("+33123456789", source_ip=source_ip)
    assert (decision.outcome, decision.code) == (Outcome.FORBIDDEN, 403)
    assert decision.routes == ()
    assert decision.tenant is None


def test_an_ipv6_source_names_its_tenant(tenant_a, route_a):
    decision = call("+33123456789", source_ip="2001:db8:a::42")
    assert decision.tenant.slug == "tenant-a"
    assert decision.outcome == Outcome.ROUTED


def test_an_ipv4_mapped_ipv6_source_is_its_ipv4_address(tenant_a, route_a):
    assert call("+33123456789", source_ip="::ffff:192.0.2.10").tenant.slug == "tenant-a"


def test_overlapping_source_networks_pick_the_most_specific(tenant_a, tenant_b, route_a, route_b):
    make_tenant("reseller", "192.0.2.128/25")
    carved_out = make_tenant("carved", "192.0.2.200")
    make_route(carved_out, "33", make_trunk(carved_out, "c1"))
    assert call("+33123456789", source_ip="192.0.2.10").tenant.slug == "tenant-a"
    assert call("+33123456789", source_ip="192.0.2.130").tenant.slug == "reseller"
    decision = call("+33123456789", source_ip="192.0.2.200")
    assert decision.tenant.slug == "carved"
    assert trunk_names(decision) == ["c1"]


def test_tenant_b_never_gets_tenant_a_routes(tenant_a, tenant_b, route_a, trunks_b):
    decision = call("+33123456789", source_ip="198.51.100.7")
    assert decision.tenant.slug == "tenant-b"
    assert decision.outcome == Outcome.NO_ROUTE
    make_route(tenant_b, "3", trunks_b[0])
    routed = call("+33123456789", source_ip="198.51.100.7")
    assert trunk_names(routed) == ["b-primary"]
    assert all(route.carrier == "Carrier B" for route in routed.routes)


def test_an_inactive_tenant_is_refused(tenant_a, route_a):
    tenant_a.is_active = False
    tenant_a.save()
    decision = call("+33123456789")
    assert (decision.outcome, decision.code) == (Outcome.FORBIDDEN, 403)


def test_an_explicit_tenant_slug_selects_the_table(tenant_a, route_a):
    assert call("+33123456789", source_ip=None, tenant="tenant-a").outcome == Outcome.ROUTED
    assert call("+33123456789", tenant="nobody").code == 403


@pytest.mark.parametrize(
    ("caller", "callee", "reason"),
    [
        ("alice", "", "No callee"),
        ('a"b', "+33123456789", "Invalid caller"),
        ("alice\r\nX-Injected: 1", "+33123456789", "Invalid caller"),
        ("alice", "<sip:x>", "Invalid callee"),
    ],
)
def test_unusable_call_data_is_answered_400_not_raised(tenant_a, route_a, caller, callee, reason):
    decision = call(callee, caller=caller)
    assert (decision.outcome, decision.code, decision.reason) == (Outcome.INVALID, 400, reason)


def test_trunk_rewrites_build_the_r_uri_headers_and_timers(tenant_a):
    trunk = make_trunk(
        tenant_a,
        "full",
        host="2001:db8::5",
        port=5061,
        transport="tls",
        tech_prefix="4711#",
        strip_digits=2,
        outbound_proxy="sip:sbc.example.net:5060",
        socket="udp:192.0.2.1:5060",
        path="<sip:edge.example.net;lr>",
        from_display="Acme {caller}",
        from_uri="sip:{caller}@acme.example",
        rewrite_to=True,
        extra_headers="P-Asserted-Identity: <sip:{caller}@acme.example>\nX-Route: {callee}",
        branch_flags=8,
        fr_timer=2000,
        fr_inv_timer=40000,
    )
    make_route(tenant_a, "33", trunk)
    decision = call("+33 1 23 45 67 89", caller="+3312", from_name="Alice")
    route = to_rtjson(decision)["routes"][0]
    assert route == {
        "uri": "sip:4711#123456789@[2001:db8::5]:5061;transport=tls",
        "dst_uri": "sip:sbc.example.net:5060",
        "path": "<sip:edge.example.net;lr>",
        "socket": "udp:192.0.2.1:5060",
        "headers": {
            "from": {"display": "Acme +3312", "uri": "sip:+3312@acme.example"},
            "to": {"display": "", "uri": "sip:4711#123456789@[2001:db8::5]:5061"},
            "extra": "P-Asserted-Identity: <sip:+3312@acme.example>\r\nX-Route: 4711#123456789\r\n",
        },
        "branch_flags": 8,
        "fr_timer": 2000,
        "fr_inv_timer": 40000,
        "carrier": "Carrier",
        "trunk": "full",
        "trunk_id": trunk.pk,
    }


def test_trunks_without_timers_get_the_platform_defaults(tenant_a, route_a, settings):
    settings.ROUTING_FR_TIMER = 3000
    settings.ROUTING_FR_INV_TIMER = 45000
    route = to_rtjson(call("+33123456789"))["routes"][0]
    assert (route["fr_timer"], route["fr_inv_timer"]) == (3000, 45000)


def test_a_decision_costs_five_queries_whatever_the_table_size(
    tenant_a, trunks_a, django_assert_num_queries
):
    """Source -> tenant, candidate customers with their sources, the blocklists' candidate
    entries, candidate prefixes, their targets: with 2,000 more prefixes and 500 more
    customers, still five."""
    make_route(tenant_a, "33", *trunks_a)

    def grow(count: int) -> None:
        from routing.models import Customer, CustomerSource, DialPrefix

        start = DialPrefix.objects.count()
        plan = default_plan(tenant_a)
        DialPrefix.objects.bulk_create(
            DialPrefix(tenant=tenant_a, plan=plan, prefix=f"9{start + n:07d}") for n in range(count)
        )
        customers = Customer.objects.bulk_create(
            Customer(tenant=tenant_a, plan=plan, name=f"c{n}", tech_prefix=f"8{n:04d}")
            for n in range(count // 4)
        )
        CustomerSource.objects.bulk_create(
            CustomerSource(customer=c, network=f"10.{n // 250}.{n % 250}.0/24")
            for n, c in enumerate(customers)
        )

    with django_assert_num_queries(5):
        small = call("+33123456789")
    grow(2000)
    with django_assert_num_queries(5):
        large = call("+33123456789")
    assert trunk_names(small) == trunk_names(large) == ["a-primary", "a-backup"]
