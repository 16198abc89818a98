"""Number translation: a customer's numbers to E.164 before matching, each trunk's format
after, ordered RE2 rules that no pattern can make slow, and failures that answer."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from api.models import issue_user_token
from kamailio.rtjson import to_rtjson
from routing import services
from routing.compiled import CompiledRouteTable
from routing.models import Customer, NumberFormat, Trunk
from routing.resolver import CallRequest, Outcome, resolve
from routing.service import decide
from routing.tables import DatabaseRouteTable
from routing.translation import (
    DiallingContext,
    RuleError,
    TranslationFailed,
    normalise,
    parse_rules,
    to_carrier,
)
from routing.translation import NumberFormat as Format
from tests.factories import make_route, make_trunk

FRANCE = DiallingContext(country_code="33", national_prefix="0", international_prefix="00")
NANP = DiallingContext(country_code="1", national_prefix="1", international_prefix="011")
FINLAND = DiallingContext(country_code="358", national_prefix="0", international_prefix="00")


# --- The translation itself (no database) --------------------------------------------


@pytest.mark.parametrize(
    ("context", "number", "e164", "how"),
    [
        (FRANCE, "0612345678", "33612345678", "national, country 33"),
        (FRANCE, "+33612345678", "33612345678", "international, leading +"),
        (FRANCE, "0033612345678", "33612345678", "international prefix 00"),
        (FRANCE, "00442071234567", "442071234567", "international prefix 00"),
        (FRANCE, "33612345678", "33612345678", "no dialling prefix recognised"),
        (NANP, "12125550123", "12125550123", "national, country 1"),
        (NANP, "011442071234567", "442071234567", "international prefix 011"),
        (FINLAND, "0401234567", "358401234567", "national, country 358"),
        (FINLAND, "+358401234567", "358401234567", "international, leading +"),
        (DiallingContext(), "+442071234567", "442071234567", "international, leading +"),
    ],
)
def test_a_dialled_number_becomes_e164_by_its_dialling_context(context, number, e164, how):
    translated = normalise(number, context=context, rules="")
    assert translated.number == e164
    assert how in translated.how


def test_the_international_prefix_is_recognised_before_the_national_one():
    # "00" starts with "0": read as national it would give 33033612345678.
    assert normalise("0033612345678", context=FRANCE, rules="").number == "33612345678"


def test_the_trace_says_what_changed_and_how():
    translated = normalise("0612345678", context=FRANCE, rules="")
    assert translated.describe("callee") == "callee 0612345678 → 33612345678 (national, country 33)"


def test_rules_apply_after_the_context_in_order_and_the_first_match_wins():
    rules = "\n".join(
        [
            "# short codes of the customer's PBX",
            r"^33(1\d{2})$ => 3399\1",
            r"^33(\d{3})$ => 3398\1",
            r"^33(\d+)$ => 33\1",  # never reached for 3-digit numbers
        ]
    )
    first = normalise("0112", context=FRANCE, rules=rules, what="callee")
    second = normalise("0212", context=FRANCE, rules=rules, what="callee")
    assert (first.number, second.number) == ("3399112", "3398212")
    assert "rule 1 of callee rules" in first.how
    assert "rule 2 of callee rules" in second.how


def test_a_rule_replaces_what_it_matched_and_keeps_the_rest():
    assert normalise("4420", context=DiallingContext(), rules="^44 => 440").number == "44020"


def test_no_matching_rule_leaves_the_number_as_the_context_made_it():
    translated = normalise("0612345678", context=FRANCE, rules=r"^44(\d+)$ => 44\1")
    assert (translated.number, translated.how) == ("33612345678", "national, country 33")


@pytest.mark.parametrize(
    ("number_format", "expected", "how"),
    [
        (Format.AS_ROUTED, "33612345678", "as routed"),
        (Format.E164, "33612345678", "E.164 digits"),
        (Format.PLUS, "+33612345678", "E.164 with +"),
        (Format.INTERNATIONAL, "0033612345678", "international prefix 00"),
        (Format.NATIONAL, "0612345678", "national, country 33"),
    ],
)
def test_a_trunk_writes_numbers_in_its_carriers_format(number_format, expected, how):
    translated = to_carrier("33612345678", number_format=number_format, context=FRANCE, rules="")
    assert (translated.number, translated.how) == (expected, how)


def test_the_national_format_dials_foreign_numbers_internationally():
    translated = to_carrier("442071234567", number_format="national", context=FRANCE, rules="")
    assert translated.number == "00442071234567"


def test_outbound_rules_see_the_formatted_number_and_may_keep_a_plus():
    translated = to_carrier(
        "33612345678", number_format="plus", context=FRANCE, rules=r"^\+33(\d+)$ => +330\1"
    )
    assert translated.number == "+330612345678"


def test_a_translation_that_empties_the_number_fails_and_says_which_rule():
    with pytest.raises(TranslationFailed, match=r"gives an empty number .*rule 1 of callee"):
        normalise("+33", context=FRANCE, rules=r"^33(\d*)$ => \1", what="callee")


def test_a_translation_that_gives_more_than_32_digits_fails():
    with pytest.raises(TranslationFailed, match="longer than 32 digits"):
        to_carrier("3" * 20, number_format="", context=FRANCE, rules=r"^(\d+)$ => \1\1")


def test_compiled_rules_are_shared_by_every_row_with_the_same_text():
    text = r"^0044(\d+)$ => 44\1"
    assert parse_rules(text) is parse_rules(str(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# comment\n\n^(\\d+)$ => \\1\n^(\\d+ => 1",
            r"Rule 2 \(line 4\): '\^\(\\\\d\+' is not an RE2 pattern: missing \)",
        ),
        (r"^(\d)\1$ => 1", "back-references need backtracking"),
        (r"^(?=33)\d+$ => 1", "look-around needs backtracking"),
        (r"^(\d+)$ => \2", r"refers to group \\2, but the pattern has only 1 group"),
        (r"^\d+$ => 33\1", r"refers to group \\1, but the pattern has no group"),
        (r"^(\d+)$ => \0", r"\\0 is not a group"),
        (r"^(\d+)$ => 33-\1", r"'33-' is not digits"),
        (r"^(\d+)$ => \1+", r"'\+' is not digits"),
        (r"^(\d+)$ => abc", "'abc' is not digits"),
        (r"^(\d+)$ =>", "the replacement is empty"),
        (r"^(\d+)$ => +", "'\\+' alone is no number"),
        ("33612345678", "write PATTERN => REPLACEMENT"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(text, message):
    with pytest.raises(RuleError, match=message):
        parse_rules(text)


def test_fifty_rules_find_the_first_that_matches_in_one_pass():
    text = "\n".join(f"^{900 + n}(\\d+)$ => {n}\\1" for n in range(49)) + "\n^9 => 8"
    rules = parse_rules(text)
    assert len(rules) == 50
    assert rules.first_match("9101234")[0] == "101234"  # rule 11 (^910), not the last (^9)
    assert rules.first_match("99")[0] == "89"
    assert rules.first_match("1234") == ("1234", None)


def test_at_most_50_rules():
    with pytest.raises(RuleError, match=r"Rule 51 .*at most 50"):
        parse_rules("\n".join([r"^(\d+)$ => \1"] * 51))


@pytest.mark.parametrize("pattern", [r"(\d+)+$", r"^(\d|\d\d)+$", r"(a+)+$", r"(\d*)*x"])
def test_a_pathological_pattern_is_accepted_and_matches_in_linear_time(pattern):
    """Patterns that take a backtracking engine exponential time are fine on RE2: they are
    valid regular expressions, and RE2 matches them in time linear in the input."""
    (rule,) = parse_rules(f"{pattern} => 1")
    started = time.perf_counter()
    for subject in ("1" * 100_000 + "x", "a" * 100_000 + "!", "1" * 40 + "!"):
        rule.apply(subject)
    assert time.perf_counter() - started < 0.5


def test_the_django_choices_are_the_translation_formats():
    assert set(NumberFormat.values) == {item.value for item in Format}


# --- Saving: the models, the admin and the API refuse bad translations -----------------

pytestmark_db = pytest.mark.django_db


@pytestmark_db
def test_a_customer_with_a_bad_rule_is_refused_naming_the_rule(tenant_a, superuser):
    customer = Customer.objects.get(tenant=tenant_a, is_default=True)
    customer.inbound_callee_rules = "# fine\n^0(\\d+)$ => 33\\1\n^(\\d+)$ => x\\1"
    with pytest.raises(ValidationError) as refused:
        services.save_customer(user=superuser, customer=customer, sources=None)
    assert "Rule 2 (line 3)" in str(refused.value.message_dict["inbound_callee_rules"])


@pytestmark_db
def test_a_national_prefix_needs_a_country_code(tenant_a, superuser):
    customer = Customer.objects.get(tenant=tenant_a, is_default=True)
    customer.national_prefix = "0"
    with pytest.raises(ValidationError, match="needs the country code"):
        services.save_customer(user=superuser, customer=customer, sources=None)


@pytestmark_db
def test_the_national_format_needs_the_carriers_country(trunks_a, superuser):
    trunk = trunks_a[0]
    trunk.number_format = "national"
    with pytest.raises(ValidationError, match="national format needs the carrier's country"):
        services.save_row(user=superuser, row=trunk)


def _customer_form(customer: Customer, **changes) -> dict:
    data = {
        "tenant": customer.tenant_id,
        "name": customer.name,
        "plan": customer.plan_id,
        "is_active": "on",
        "description": "",
        "is_default": "on" if customer.is_default else "",
        "tech_prefix": "",
        "account": "",
        "country_code": "",
        "national_prefix": "",
        "international_prefix": "",
        "inbound_callee_rules": "",
        "inbound_caller_rules": "",
        "sources-TOTAL_FORMS": "0",
        "sources-INITIAL_FORMS": "0",
        "sources-MIN_NUM_FORMS": "0",
        "sources-MAX_NUM_FORMS": "1000",
    }
    return {**data, **changes}


@pytestmark_db
def test_the_admin_shows_the_rules_error_and_saves_good_rules(client, operator_a, tenant_a):
    client.force_login(operator_a)
    customer = Customer.objects.get(tenant=tenant_a, is_default=True)
    url = reverse("admin:routing_customer_change", args=[customer.pk])
    page = client.get(url).content.decode()
    assert "Number translation" in page
    assert "RE2 syntax" in page

    bad = client.post(url, _customer_form(customer, inbound_callee_rules="^(\\d+ => 1"))
    good = client.post(
        url,
        _customer_form(
            customer, country_code="33", national_prefix="0", inbound_callee_rules="^0 => 33"
        ),
    )

    assert bad.status_code == 200
    assert "Rule 1 (line 1)" in bad.content.decode()
    assert good.status_code == 302, good.content.decode()[:2000]
    customer.refresh_from_db()
    assert (customer.country_code, customer.inbound_callee_rules) == ("33", "^0 => 33")


@pytestmark_db
def test_the_trunk_admin_has_a_number_translation_section(client, operator_a, trunks_a):
    client.force_login(operator_a)
    page = client.get(reverse("admin:routing_trunk_change", args=[trunks_a[0].pk]))
    html = page.content.decode()
    assert "Number translation" in html
    assert 'name="outbound_callee_rules"' in html


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_user_token(user=user)[0]}")
    return client


@pytestmark_db
def test_the_api_reads_writes_and_refuses_translations(operator_a, tenant_a, trunks_a):
    api = _api(operator_a)
    customer = Customer.objects.get(tenant=tenant_a, is_default=True)
    trunk = trunks_a[0]

    bad_customer = api.patch(
        f"/api/v1/customers/{customer.pk}",
        {"inbound_caller_rules": r"^(\d+)$ => \3"},
        format="json",
    )
    bad_trunk = api.patch(
        f"/api/v1/trunks/{trunk.pk}", {"number_format": "national"}, format="json"
    )
    good = api.patch(
        f"/api/v1/trunks/{trunk.pk}",
        {"number_format": "international", "outbound_callee_rules": r"^0033(\d+)$ => 0033\1"},
        format="json",
    )

    assert bad_customer.status_code == 400
    assert "Rule 1 (line 1)" in bad_customer.json()["inbound_caller_rules"][0]
    assert bad_trunk.status_code == 400
    assert "country_code" in bad_trunk.json()
    assert good.status_code == 200, good.content
    assert good.json()["number_format"] == "international"
    assert api.get(f"/api/v1/customers/{customer.pk}").json()["country_code"] == ""


@pytestmark_db
def test_an_outsider_can_neither_read_nor_change_anothers_translation(outsider, tenant_a, trunks_a):
    api = _api(outsider)
    customer = Customer.objects.get(tenant=tenant_a, is_default=True)
    for url in (f"/api/v1/customers/{customer.pk}", f"/api/v1/trunks/{trunks_a[0].pk}"):
        assert api.get(url).status_code == 404
        assert api.patch(url, {"country_code": "44"}, format="json").status_code == 404
    customer.refresh_from_db()
    assert customer.country_code == ""


# --- Routing: inbound before matching, outbound per trunk ------------------------------


def call(callee: str, caller: str = "0123456789", **fields) -> object:
    fields.setdefault("source_ip", "192.0.2.10")
    fields.setdefault("call_id", "translation@pbx")
    return decide(CallRequest(callee=callee, caller=caller, **fields))


def french_customer(tenant, **rules) -> Customer:
    customer = Customer.objects.get(tenant=tenant, is_default=True)
    customer.country_code, customer.national_prefix, customer.international_prefix = (
        "33",
        "0",
        "00",
    )
    for name, value in rules.items():
        setattr(customer, name, value)
    customer.full_clean()
    customer.save()
    return customer


@pytestmark_db
def test_a_national_number_is_routed_by_its_e164_prefix(tenant_a, trunks_a):
    french_customer(tenant_a)
    make_route(tenant_a, "336", trunks_a[0])
    make_route(tenant_a, "06", trunks_a[1])  # would match the number as dialled

    decision = call("06 12 34 56 78")

    assert decision.outcome == Outcome.ROUTED
    assert decision.matched.prefix == "336"
    assert (decision.callee, decision.caller) == ("33612345678", "33123456789")
    assert "callee 0612345678 → 33612345678 (national, country 33)" in decision.trace
    assert "caller 0123456789 → 33123456789 (national, country 33)" in decision.trace
    # Normalised before matching, so an unchanged trunk gets the E.164 digits.
    assert decision.routes[0].uri == "sip:33612345678@192.0.2.101:5060"


@pytestmark_db
def test_the_customers_rules_apply_after_its_context(tenant_a, trunks_a):
    french_customer(tenant_a, inbound_callee_rules="^44 => 4420\n^33(\\d{3})$ => 3390\\1")
    make_route(tenant_a, "3390", trunks_a[0])
    decision = call("0112")
    assert decision.matched.prefix == "3390"
    assert any("rule 2 of callee rules" in step for step in decision.trace)


@pytestmark_db
def test_a_customer_without_translation_routes_numbers_as_dialled(tenant_a, trunks_a):
    make_route(tenant_a, "33", trunks_a[0])
    decision = call("+33 1 23 45 67 89", caller="+33999")
    assert decision.routes[0].uri == "sip:+33123456789@192.0.2.101:5060"
    assert decision.caller == "+33999"
    assert not any("→" in step for step in decision.trace)


@pytestmark_db
def test_a_callee_the_rules_empty_is_refused_with_484_not_routed(tenant_a, trunks_a):
    french_customer(tenant_a, inbound_callee_rules=r"^33(\d{0,2})$ => \1")
    make_route(tenant_a, "", trunks_a[0])
    decision = call("+33")
    assert (decision.outcome, decision.code, decision.reason) == (
        Outcome.INVALID,
        484,
        "Address Incomplete",
    )
    assert any("callee cannot be normalised" in step for step in decision.trace)
    assert to_rtjson(decision)["success"] is False


@pytestmark_db
def test_a_caller_the_rules_empty_is_refused_with_403(tenant_a, trunks_a):
    french_customer(tenant_a, inbound_caller_rules=r"^33(\d*)$ => \1")
    make_route(tenant_a, "33", trunks_a[0])
    assert call("0612345678", caller="+33").code == 403


@pytestmark_db
def test_a_caller_that_is_not_a_number_is_left_as_it_is(tenant_a, trunks_a):
    french_customer(tenant_a)
    make_route(tenant_a, "33", trunks_a[0])
    decision = call("0612345678", caller="anonymous")
    assert decision.outcome == Outcome.ROUTED
    assert decision.caller == "anonymous"


@pytestmark_db
@pytest.mark.parametrize(
    ("number_format", "callee", "caller"),
    [
        ("", "33612345678", "33123456789"),
        ("e164", "33612345678", "33123456789"),
        ("plus", "+33612345678", "+33123456789"),
        ("international", "0033612345678", "0033123456789"),
        ("national", "0612345678", "0123456789"),
    ],
)
def test_each_trunk_gets_the_r_uri_from_and_pai_in_its_format(
    tenant_a, number_format, callee, caller
):
    french_customer(tenant_a)
    trunk = make_trunk(
        tenant_a,
        "carrier-x",
        host="x.example.net",
        number_format=number_format,
        country_code="33",
        from_uri="sip:{caller}@sbc.example.net",
        extra_headers="P-Asserted-Identity: <sip:{caller}@sbc.example.net>",
    )
    make_route(tenant_a, "33", trunk)

    (route,) = call("0612345678").routes

    assert route.uri == f"sip:{callee}@x.example.net"
    assert route.from_uri == f"sip:{caller}@sbc.example.net"
    assert route.extra_headers == (("P-Asserted-Identity", f"<sip:{caller}@sbc.example.net>"),)


@pytestmark_db
def test_the_format_and_rules_come_before_strip_digits_and_the_tech_prefix(tenant_a):
    french_customer(tenant_a)
    trunk = make_trunk(
        tenant_a,
        "carrier-y",
        number_format="international",
        outbound_callee_rules=r"^0033(\d+)$ => 00330\1",
        strip_digits=2,
        tech_prefix="4711#",
    )
    make_route(tenant_a, "33", trunk)
    decision = call("0612345678")
    assert decision.routes[0].uri == "sip:4711#330612345678@carrier-y.example.net"
    assert any(
        step.startswith("for Carrier/carrier-y: callee 33612345678 → 00330612345678")
        for step in decision.trace
    )


@pytestmark_db
def test_the_from_user_follows_a_translated_caller_without_a_from_uri(tenant_a):
    trunk = make_trunk(tenant_a, "carrier-z", number_format="plus")
    make_route(tenant_a, "33", trunk)
    decision = call(
        "33612345678",
        caller="33123456789",
        from_name="Alice",
        from_uri="sip:33123456789@pbx.example.net;user=phone",
    )
    route = decision.routes[0]
    assert (route.from_display, route.from_uri) == (
        "Alice",
        "sip:+33123456789@pbx.example.net;user=phone",
    )


@pytestmark_db
def test_a_trunk_whose_translation_fails_is_skipped_with_the_reason(tenant_a, trunks_a):
    french_customer(tenant_a)
    # A valid rule (digits and a group) that gives an empty number for this call.
    broken = make_trunk(tenant_a, "broken", outbound_callee_rules=r"^\d+()$ => \1")
    broken.full_clean()
    make_route(tenant_a, "33", broken, trunks_a[1])

    decision = call("0612345678")

    assert [route.trunk for route in decision.routes] == ["a-backup"]
    assert decision.skipped == (
        "Carrier/broken: callee cannot be translated: 33612345678 gives an empty number "
        "(rule 1 of callee rules)",
    )
    assert f"skipped {decision.skipped[0]}" in decision.trace


@pytestmark_db
def test_when_no_trunk_can_take_the_number_the_call_falls_back_or_gets_503(tenant_a, trunks_a):
    french_customer(tenant_a)
    Trunk.objects.filter(pk=trunks_a[0].pk).update(outbound_callee_rules="^(\\d+ => 1")
    make_route(tenant_a, "33", trunks_a[0])
    decision = call("0612345678")
    assert (decision.outcome, decision.code) == (Outcome.NO_ROUTE, 503)
    assert "callee cannot be translated: Rule 1 (line 1)" in decision.skipped[0]

    make_route(tenant_a, "", trunks_a[1])
    assert [route.trunk for route in call("0612345678").routes] == ["a-backup"]


@pytestmark_db
def test_the_compiled_table_translates_like_the_database(tenant_a, trunks_a):
    french_customer(tenant_a, inbound_callee_rules=r"^33(1\d\d)$ => 3390\1")
    Trunk.objects.filter(pk=trunks_a[0].pk).update(number_format="national", country_code="33")
    Trunk.objects.filter(pk=trunks_a[1].pk).update(number_format="plus")
    make_route(tenant_a, "33", (trunks_a[1], 2, 100), (trunks_a[0], 1, 100))
    make_route(tenant_a, "", trunks_a[0])
    compiled = CompiledRouteTable(background=False, poll_interval=0)
    compiled.refresh()
    for callee in ("0612345678", "0112", "+442071234567"):
        request = CallRequest(callee=callee, caller="0123", source_ip="192.0.2.10", call_id="c")
        database = resolve(request, table=DatabaseRouteTable())
        assert database.routes
        got = resolve(request, table=compiled)
        assert replace(got, decision_id="") == replace(database, decision_id="")


@pytestmark_db
def test_trunks_sharing_settings_each_get_the_translation_and_a_trace_line(tenant_a):
    french_customer(tenant_a)
    first = make_trunk(tenant_a, "one", number_format="plus")
    second = make_trunk(tenant_a, "two", number_format="plus")
    make_route(tenant_a, "33", first, second)
    decision = call("0612345678")
    assert [route.uri for route in decision.routes] == [
        "sip:+33612345678@one.example.net",
        "sip:+33612345678@two.example.net",
    ]
    for name in ("one", "two"):
        assert f"for Carrier/{name}: callee 33612345678 → +33612345678 (E.164 with +)" in (
            decision.trace
        )


class ReversedTargets(DatabaseRouteTable):
    """The database table giving each route's targets in the opposite order, as another
    table (the compiled one) may."""

    def routes(self, plan_id, candidates, version):
        found = super().routes(plan_id, candidates, version)
        return [(row, targets[::-1]) for row, targets in found]


@pytestmark_db
def test_the_trace_of_translations_follows_the_routes_not_the_tables_order(tenant_a):
    french_customer(tenant_a)
    trunks = [make_trunk(tenant_a, f"t{n}", number_format="plus") for n in range(3)]
    make_route(tenant_a, "33", *((trunk, n, 100) for n, trunk in enumerate(trunks, start=1)))
    request = CallRequest(callee="0612345678", source_ip="192.0.2.10", call_id="c")
    database = resolve(request, table=DatabaseRouteTable())
    reversed_table = resolve(request, table=ReversedTargets())
    assert replace(reversed_table, decision_id="") == replace(database, decision_id="")
    assert [step.split(":")[0] for step in database.trace if step.startswith("for ")] == [
        "for Carrier/t0",
        "for Carrier/t1",
        "for Carrier/t2",
    ]
