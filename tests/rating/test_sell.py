"""Sell decks: a plan's or a customer's, in the vendor decks' format and currency."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from rating import services
from rating.exporting import write_csv
from rating.importing import ImportFailed, import_deck
from rating.lookup import (
    RateMatch,
    RateSource,
    RateStore,
    comparable,
    rate_source,
    sell_rate_for,
    sell_rate_from_database,
)
from rating.models import RateDeck
from routing.models import RouteChange
from tests.rating.conftest import HEADER, T0, T1, make_deck, text

VENDOR = HEADER + "33,France,0.010,0,60,60\n336,France mobile,0.040,0,60,60\n"
PLAN = HEADER + "33,France,0.020,0,60,60\n336,France mobile,0.060,0.01,30,6\n"
CUSTOMER = HEADER + "33,France,0.015,0,1,1\n"


@pytest.fixture
def store(db) -> RateStore:
    return RateStore(poll_interval=0, background=False)


def test_a_sell_deck_belongs_to_a_plan_or_a_customer(plan_a, customer_a, tenant_a):
    plan_deck = make_deck(plan_a, PLAN).deck
    customer_deck = make_deck(customer_a, CUSTOMER).deck
    assert (plan_deck.kind, plan_deck.owner, plan_deck.tenant) == ("sell", plan_a, tenant_a)
    assert (customer_deck.owner_field, customer_deck.rows) == ("customer", 1)
    assert str(plan_deck).startswith("plan Default:")
    assert str(customer_deck).startswith("customer Initech:")
    keys = set(RouteChange.objects.filter(kind="deck").values_list("key", flat=True))
    assert keys == {f"plan:{plan_a.pk}", f"customer:{customer_a.pk}"}
    assert plan_deck.history.count() == 1


@pytest.mark.parametrize(
    "owners", [{}, {"carrier": True, "plan": True}, {"plan": True, "customer": True}]
)
def test_the_database_holds_exactly_one_owner(carrier_a, plan_a, customer_a, tenant_a, owners):
    rows = {"carrier": carrier_a, "plan": plan_a, "customer": customer_a}
    with pytest.raises(IntegrityError), transaction.atomic():
        RateDeck.objects.create(
            tenant=tenant_a,
            currency="EUR",
            effective_from=T0,
            **{field: rows[field] for field in owners},
        )


def test_import_deck_needs_exactly_one_owner(carrier_a, plan_a):
    with pytest.raises(ValueError, match="exactly one"):
        import_deck(text(PLAN), carrier=carrier_a, plan=plan_a, effective_from=T0, currency="EUR")


def test_one_sell_deck_per_owner_and_time(plan_a, customer_a):
    make_deck(plan_a, PLAN)
    make_deck(customer_a, PLAN)  # another owner, the same time: fine
    with pytest.raises(ImportFailed) as failed:
        make_deck(plan_a, PLAN)
    assert "plan Default already has a deck effective" in failed.value.errors[0].message


def test_the_customers_deck_wins_over_its_plans_else_the_plan_answers(premium_a, customer_a, store):
    plan_deck = make_deck(premium_a, PLAN, at=T0).deck
    customer_deck = make_deck(customer_a, CUSTOMER, at=T1).deck
    before = store.sell_rate_for(
        plan_id=premium_a.pk, customer_id=customer_a.pk, digits="33612", at=T0
    )
    assert before == RateMatch("336", Decimal("0.06"), Decimal("0.01"), 30, 6, "EUR", plan_deck.pk)
    after = store.sell_rate_for(
        plan_id=premium_a.pk, customer_id=customer_a.pk, digits="33612", at=T1
    )
    assert (after.prefix, after.rate, after.deck_id) == ("33", Decimal("0.015"), customer_deck.pk)
    # A customer's deck replaces the plan's whole: a prefix it lacks is not priced.
    assert (
        store.sell_rate_for(plan_id=premium_a.pk, customer_id=customer_a.pk, digits="4420", at=T1)
        is None
    )
    # The plan alone, or a customer without a deck, gets the plan's rates.
    plan_only = store.sell_rate_for(plan_id=premium_a.pk, customer_id=None, digits="3361", at=T1)
    assert plan_only.deck_id == plan_deck.pk
    assert store.sell_rate_for(plan_id=None, customer_id=None, digits="33", at=T1) is None


def test_compiled_and_database_sell_lookups_agree(premium_a, plan_a, customer_a, store):
    make_deck(premium_a, PLAN, at=T0)
    make_deck(customer_a, CUSTOMER, at=T1)
    store.refresh()
    for at in (T0 - timedelta(days=1), T0, T1, T1 + timedelta(days=400)):
        for plan_id in (premium_a.pk, plan_a.pk, None):
            for customer_id in (customer_a.pk, None):
                for number in ("33", "336", "3361234", "44", ""):
                    args = (plan_id, customer_id, number, at)
                    assert store.sell_rate_for(
                        plan_id=plan_id, customer_id=customer_id, digits=number, at=at
                    ) == sell_rate_from_database(*args), args


def test_sell_lookups_need_no_query_once_built(
    premium_a, customer_a, store, django_assert_num_queries
):
    make_deck(premium_a, PLAN, at=T0)
    make_deck(customer_a, CUSTOMER, at=T1)
    store.refresh()
    store.poll_interval = 3600
    store._next_check = float("inf")
    with django_assert_num_queries(0):
        for at in (T0, T1):
            assert store.sell_rate_for(
                plan_id=premium_a.pk, customer_id=customer_a.pk, digits="3361", at=at
            )
            assert store.rate_for(999, "3361", at) is None


def test_a_new_sell_deck_is_used_after_the_next_poll(premium_a, customer_a, db):
    store = RateStore(poll_interval=3600, background=False)
    make_deck(premium_a, PLAN, at=T0)
    args = {"plan_id": premium_a.pk, "customer_id": customer_a.pk, "digits": "331", "at": T1}
    assert store.sell_rate_for(**args).rate == Decimal("0.02")
    deck = make_deck(customer_a, CUSTOMER, at=T1).deck
    assert store.sell_rate_for(**args).rate == Decimal("0.02")  # not polled yet
    store.refresh()
    assert store.sell_rate_for(**args).deck_id == deck.pk
    services.delete_deck(user=None, deck=deck)
    store.refresh()
    assert store.sell_rate_for(**args).rate == Decimal("0.02")


def test_the_rate_source_answers_vendor_and_sell_rates(carrier_a, premium_a, customer_a):
    vendor = make_deck(carrier_a, VENDOR, at=T0).deck
    sell = make_deck(premium_a, PLAN, at=T0).deck
    source = import_string("rating.lookup.rate_source")()
    assert isinstance(source, RateSource)
    cost = source.vendor_rate(carrier_a.pk, "3361", T1)
    price = source.sell_rate(premium_a.pk, customer_a.pk, "3361", T1)
    assert (cost.rate, cost.deck_id, price.rate, price.deck_id) == (
        Decimal("0.04"),
        vendor.pk,
        Decimal("0.06"),
        sell.pk,
    )
    assert comparable(cost, price)
    assert sell_rate_for(plan_id=premium_a.pk, customer_id=None, digits="3361", at=T1) == price
    assert rate_source().vendor_rate(carrier_a.pk, "44", T1) is None


def test_a_sell_deck_in_another_currency_than_the_vendors_is_refused(
    carrier_a, premium_a, customer_a, tenant_a, settings
):
    make_deck(carrier_a, VENDOR, at=T0, currency="USD")
    with pytest.raises(ImportFailed) as failed:
        make_deck(premium_a, PLAN, at=T1, currency="EUR")
    (error,) = failed.value.errors
    assert error.column == "currency"
    assert "this sell deck is in EUR" in error.message
    assert "Carrier A (USD)" in error.message
    assert "RATING_ALLOW_MIXED_CURRENCIES" in error.message
    assert not RateDeck.objects.filter(plan=premium_a).exists()
    make_deck(premium_a, PLAN, at=T1, currency="USD")  # the vendors' currency: fine
    # And the other way round: a vendor deck against the sell decks.
    with pytest.raises(ImportFailed) as failed:
        make_deck(carrier_a, VENDOR, at=T1, currency="EUR")
    assert "plan Premium (USD)" in failed.value.errors[0].message
    # Allowed by the setting: kept, and the two are not comparable.
    settings.RATING_ALLOW_MIXED_CURRENCIES = True
    make_deck(customer_a, CUSTOMER, at=T1, currency="EUR")
    source = rate_source()
    cost = source.vendor_rate(carrier_a.pk, "331", T1)
    price = source.sell_rate(premium_a.pk, customer_a.pk, "331", T1)
    assert (cost.currency, price.currency, comparable(cost, price)) == ("USD", "EUR", False)


def test_only_vendor_decks_in_force_then_or_later_count(carrier_a, plan_a, premium_a):
    make_deck(carrier_a, VENDOR, at=T0 - timedelta(days=30), currency="USD")
    make_deck(carrier_a, VENDOR, at=T0, currency="EUR")  # replaces the USD deck
    assert make_deck(plan_a, PLAN, at=T1, currency="EUR").deck
    # Before T0 the USD deck is in force: a sell deck from then is refused.
    with pytest.raises(ImportFailed, match=r"Carrier A \(USD\)"):
        make_deck(premium_a, PLAN, at=T0 - timedelta(days=1), currency="EUR")
    # A future vendor deck in another currency counts too.
    make_deck(carrier_a, VENDOR, at=T1 + timedelta(days=30), currency="EUR")
    with pytest.raises(ImportFailed, match=r"Carrier A \(EUR\)"):
        make_deck(premium_a, PLAN, at=T1, currency="GBP")


def test_another_tenants_vendor_decks_never_count(carrier_b, plan_a):
    make_deck(carrier_b, VENDOR, at=T0, currency="USD")
    assert make_deck(plan_a, PLAN, at=T1, currency="EUR").deck.currency == "EUR"


def test_an_operator_cannot_import_a_sell_deck_for_another_tenant(plan_a, outsider):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        make_deck(plan_a, PLAN, user=outsider)
    assert not RateDeck.objects.exists()


def test_sell_decks_export_and_import_back(premium_a, customer_a):
    first = io.StringIO()
    write_csv(make_deck(premium_a, PLAN, at=T0).deck, first)
    again = import_deck(text(first.getvalue()), customer=customer_a, effective_from=T1).deck
    second = io.StringIO()
    write_csv(again, second)
    assert second.getvalue() == first.getvalue()


def test_the_commands_take_a_plan_or_a_customer(premium_a, customer_a, tmp_path):
    path = tmp_path / "sell.csv"
    path.write_text(PLAN, encoding="utf-8")
    out = io.StringIO()
    options = {"effective": "2026-01-01", "currency": "EUR", "no_progress": True}
    call_command(
        "import_rates", str(path), tenant="tenant-a", plan="Premium", stdout=out, **options
    )
    assert "tenant-a/plan Premium: 2 rates in EUR" in out.getvalue()
    call_command(
        "import_rates", str(path), tenant="tenant-a", customer="Initech", stdout=out, **options
    )
    exported = tmp_path / "out.csv"
    call_command(
        "export_rates",
        tenant="tenant-a",
        customer="Initech",
        output=str(exported),
        stderr=io.StringIO(),
    )
    assert "336,France mobile,0.06,0.01,30,6,EUR" in exported.read_text()
    with pytest.raises(CommandError, match="No plan 'Gold'"):
        call_command("import_rates", str(path), tenant="tenant-a", plan="Gold", **options)
    with pytest.raises(CommandError, match="No customer 'Initech' in tenant 'tenant-b'"):
        call_command("export_rates", tenant="tenant-b", customer="Initech")
    with pytest.raises(CommandError, match="plan Premium has no rate deck in force"):
        call_command("export_rates", tenant="tenant-a", plan="Premium", at="2025-01-01")
    with pytest.raises(CommandError):
        call_command("export_rates", tenant="tenant-a", plan="Premium", customer="Initech")
