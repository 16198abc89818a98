"""Rate deck CSV: every bad row reported with line and column, all or nothing, exact round trips."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from rating.exporting import write_csv
from rating.importing import ImportFailed, import_deck
from rating.models import Rate, RateDeck
from routing.models import RouteChange
from tests.rating.conftest import HEADER, T0, T1, T2, make_deck, text

GOOD = HEADER + "33,France,0.012,0,60,60\n336,France mobile,0.0451,0.01,30,6\n44,UK,0.5,,,\n"


def errors_of(body: str, **kwargs) -> list[tuple[int, str]]:
    with pytest.raises(ImportFailed) as failed:
        make_deck(kwargs.pop("carrier"), body, **kwargs)
    return [(e.line, e.column) for e in failed.value.errors], failed.value.errors


def test_it_imports_a_deck_with_defaults(carrier_a):
    result = make_deck(carrier_a, GOOD)
    deck = result.deck
    assert (deck.rows, deck.currency, deck.effective_from) == (3, "EUR", T0)
    uk = Rate.objects.get(deck=deck, prefix="44")
    assert (uk.rate, uk.connect_fee, uk.initial_increment, uk.next_increment) == (
        Decimal("0.5"),
        0,
        60,
        60,
    )
    mobile = Rate.objects.get(deck=deck, prefix="336")
    assert (mobile.connect_fee, mobile.initial_increment, mobile.next_increment) == (
        Decimal("0.01"),
        30,
        6,
    )
    assert RouteChange.objects.filter(kind="deck", key=str(carrier_a.pk)).count() == 1


def test_it_refuses_every_bad_row_with_line_and_column_and_writes_nothing(carrier_a):
    body = (
        HEADER
        + "33,ok,0.01,0,60,60\n"
        + "33a,letters,0.01,0,60,60\n"  # 3
        + "34,negative,-0.01,0,60,60\n"  # 4
        + "35,not a number,abc,0,60,60\n"  # 5
        + "36,comma,0,01,0,60,60\n"  # 6: one field too many
        + "37,zero,0.01,0,0,60\n"  # 7
        + "33,dup,0.01,0,60,60\n"  # 8
        + "38,places,0.0000001,0,60,60\n"  # 9
        + "39,fee,0.01,x,60,-1\n"  # 10: two errors
    )
    where, errors = errors_of(body, carrier=carrier_a)
    assert where == [
        (3, "prefix"),
        (4, "rate"),
        (5, "rate"),
        (6, ""),
        (7, "initial_increment"),
        (8, "prefix"),
        (9, "rate"),
        (10, "connect_fee"),
        (10, "next_increment"),
    ]
    assert "already on line 2" in errors[5].message
    assert "negative" in errors[1].message
    assert "at least 1 second" in errors[4].message
    assert not RateDeck.objects.exists()
    assert not Rate.objects.exists()
    assert not RouteChange.objects.filter(kind="deck").exists()


def test_it_refuses_a_decimal_comma_with_a_hint(carrier_a):
    _, errors = errors_of('prefix,rate\n33,"0,012"\n', carrier=carrier_a)
    assert (errors[0].line, errors[0].column) == (2, "rate")
    assert "0.012" in errors[0].message


def test_effective_date_and_currency_come_from_the_file(carrier_a):
    body = (
        "\ufeffPrefix,RATE,Effective_Date,Currency\n"
        "33,0.01,2026-06-01,usd\n"
        "34,0.02,2026-06-01T00:00:00Z,USD\n"
    )
    result = import_deck(text(body.lstrip("\ufeff")), carrier=carrier_a)
    assert (result.deck.effective_from, result.deck.currency) == (T1, "USD")


def test_a_second_effective_date_is_an_error_naming_both_lines(carrier_a):
    body = "prefix,rate,effective_date,currency\n33,0.01,2026-06-01,EUR\n34,0.01,2026-07-01,EUR\n"
    with pytest.raises(ImportFailed) as failed:
        import_deck(text(body), carrier=carrier_a)
    (error,) = failed.value.errors
    assert (error.line, error.column) == (3, "effective_date")
    assert "line 2" in error.message


def test_effective_given_overrides_the_file(carrier_a):
    body = "prefix,rate,effective_date\n33,0.01,2026-06-01\n34,0.01,whenever\n"
    result = import_deck(text(body), carrier=carrier_a, effective_from=T2, currency="EUR")
    assert result.deck.effective_from == T2


@pytest.mark.parametrize(
    ("body", "kwargs", "column"),
    [
        ("prefix,rate,effective_date\n33,0.01,01/06/2026\n", {"currency": "EUR"}, "effective_date"),
        ("prefix,rate\n33,0.01\n", {"currency": "EUR"}, "effective_date"),
        ("prefix,rate,currency\n33,0.01,XYZ\n", {"effective_from": T0}, "currency"),
        ("prefix,rate\n33,0.01\n", {"effective_from": T0}, "currency"),
        (
            "prefix,rate,currency\n33,0.01,USD\n",
            {"effective_from": T0, "currency": "EUR"},
            "currency",
        ),
        ("prefix,rate,currency\n33,0.01,EUR\n34,0.01,USD\n", {"effective_from": T0}, "currency"),
        ("prefix,price\n33,0.01\n", {"effective_from": T0, "currency": "EUR"}, "price"),
        ("prefix\n33\n", {"effective_from": T0, "currency": "EUR"}, "rate"),
    ],
)
def test_deck_values_are_checked(carrier_a, body, kwargs, column):
    with pytest.raises(ImportFailed) as failed:
        import_deck(text(body), carrier=carrier_a, **kwargs)
    assert column in [e.column for e in failed.value.errors]
    assert not RateDeck.objects.exists()


def test_an_unknown_currency_argument_is_refused(carrier_a):
    with pytest.raises(ImportFailed) as failed:
        make_deck(carrier_a, GOOD, currency="EURO")
    assert failed.value.errors[0].column == "currency"


def test_one_deck_per_carrier_and_time(carrier_a):
    make_deck(carrier_a, GOOD)
    with pytest.raises(ImportFailed) as failed:
        make_deck(carrier_a, GOOD)
    assert "already has a deck effective" in failed.value.errors[0].message
    assert RateDeck.objects.count() == 1


def test_an_operator_cannot_import_into_another_tenants_carrier(carrier_a, outsider):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        make_deck(carrier_a, GOOD, user=outsider)
    assert not RateDeck.objects.exists()


def export_text(deck, **kwargs) -> str:
    out = io.StringIO()
    write_csv(deck, out, **kwargs)
    return out.getvalue()


def test_export_import_export_gives_the_same_bytes(carrier_a):
    body = (
        HEADER
        + '1,"Comma, ""quoted""",0.000001,0,1,1\n'
        + "44,UK,999999.999999,999999.999999,32767,32767\n"
        + "33,France,0.0120,0.000,60,60\n"
        + "336,France mobile,.5,1,30,6\n"
        + "12345678901234567890123456789012,long,0,0,60,60\n"
    )
    first = export_text(make_deck(carrier_a, body, at=T0).deck)
    assert first.splitlines()[0] == HEADER.strip() + ",currency"
    assert "33,France,0.012,0,60,60,EUR" in first
    again = import_deck(text(first), carrier=carrier_a, effective_from=T1).deck
    assert export_text(again) == first
    dated = export_text(again, with_effective=True)
    assert "2026-06-01T00:00:00Z" in dated
    third = import_deck(
        text(dated),
        carrier=carrier_a.__class__.objects.create(tenant=carrier_a.tenant, name="Other"),
    ).deck
    assert (third.effective_from, export_text(third, with_effective=True)) == (T1, dated)


def test_the_commands_import_and_export(carrier_a, tmp_path):
    path = tmp_path / "deck.csv"
    path.write_text("\ufeff" + GOOD, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_rates",
        str(path),
        tenant="tenant-a",
        carrier="Carrier A",
        effective="2026-01-01T00:00:00Z",
        currency="EUR",
        stdout=out,
        stderr=err,
    )
    assert "3 rates in EUR" in out.getvalue()
    assert "checking" in err.getvalue()  # the progress bar, one line off a terminal
    exported = tmp_path / "out.csv"
    call_command(
        "export_rates",
        tenant="tenant-a",
        carrier="Carrier A",
        at="2026-02-01",
        output=str(exported),
        stderr=io.StringIO(),
    )
    assert exported.read_text().startswith(
        HEADER.strip() + ",currency\n33,France,0.012,0,60,60,EUR"
    )
    with pytest.raises(CommandError, match="no rate deck in force"):
        call_command("export_rates", tenant="tenant-a", carrier="Carrier A", at="2025-01-01")


def test_the_command_reports_bad_rows(carrier_a, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "33x,France,0.012,0,60,60\n")
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command(
            "import_rates",
            str(path),
            tenant="tenant-a",
            carrier="Carrier A",
            effective="2026-01-01",
            currency="EUR",
            no_progress=True,
            stderr=err,
        )
    assert "bad.csv: line 2, column prefix" in err.getvalue()
    with pytest.raises(CommandError, match="--effective"):
        call_command(
            "import_rates", str(path), tenant="tenant-a", carrier="Carrier A", effective="soon"
        )
    with pytest.raises(CommandError, match="No carrier"):
        call_command("import_rates", str(path), tenant="tenant-b", carrier="Carrier A")


def test_the_deck_in_force_is_the_latest_effective_before_the_time(carrier_a):
    from rating.services import deck_in_force

    old = make_deck(carrier_a, GOOD, at=T0).deck
    new = make_deck(carrier_a, GOOD, at=T1).deck
    assert deck_in_force(carrier_a.pk, datetime(2025, 1, 1, tzinfo=UTC)) is None
    assert deck_in_force(carrier_a.pk, T0) == old
    assert deck_in_force(carrier_a.pk, T1) == new
    assert (old.state(T1), new.state(T1), new.state(T0)) == ("past", "in force", "future")
    assert str(old).startswith("Carrier A:")
    assert str(RateDeck())
    assert str(Rate())
