"""The demo's rate decks: Globex buys from two vendors and sells its Premium plan.

Meridian and Harbor each send a deck (Harbor cheaper for UK mobiles, Meridian for
the rest of the UK); Premium's sell deck and a 10% margin keep Harbor's pricier UK
fixed-line rate out. Idempotent: a deck is added only when its owner has none.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rating.importing import import_deck
from rating.models import RateDeck
from routing.models import Carrier, RoutingPlan

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = "prefix,description,rate,connect_fee,initial_increment,next_increment\n"
VENDOR_DECKS = {
    "Meridian Telecom": "44,United Kingdom,0.0120,0,60,60\n447,UK mobile,0.0250,0,60,60\n",
    "Harbor Networks": "44,United Kingdom,0.0240,0,60,60\n447,UK mobile,0.0150,0,1,1\n",
}
SELL_DECK = ("Premium", "44,United Kingdom,0.0200,0,60,60\n447,UK mobile,0.0300,0,60,60\n")


def seed_rates(tenant) -> int:
    """The demo decks of `tenant` (Globex); returns how many were added."""
    added = 0
    for name, rows in VENDOR_DECKS.items():
        carrier = Carrier.objects.get(tenant=tenant, name=name)
        if not RateDeck.objects.filter(carrier=carrier).exists():
            import_deck(_text(rows), carrier=carrier, effective_from=SINCE, currency="EUR")
            added += 1
    plan = RoutingPlan.objects.get(tenant=tenant, name=SELL_DECK[0])
    if not RateDeck.objects.filter(plan=plan).exists():
        import_deck(_text(SELL_DECK[1]), plan=plan, effective_from=SINCE, currency="EUR")
        added += 1
    return added


def _text(rows: str):
    return lambda: io.StringIO(HEADER + rows)
