"""Fixtures of the rating suites: carriers of tenants A and B, and a deck builder."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import pytest

from rating import lookup
from rating.importing import import_deck
from routing.models import Carrier

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC)
T2 = datetime(2027, 1, 1, tzinfo=UTC)
HEADER = "prefix,description,rate,connect_fee,initial_increment,next_increment\n"


def text(body: str):
    return lambda: io.StringIO(body)


def make_deck(carrier, body: str, *, at=T0, currency="EUR", **kwargs):
    return import_deck(text(body), carrier=carrier, effective_from=at, currency=currency, **kwargs)


@pytest.fixture
def carrier_a(trunks_a) -> Carrier:
    return trunks_a[0].carrier


@pytest.fixture
def carrier_b(trunks_b) -> Carrier:
    return trunks_b[0].carrier


@pytest.fixture(autouse=True)
def fresh_rate_store():
    """This process's rate store, built in the test's own transaction (no thread).

    A background build reads through its own connection, which cannot see the rows
    of a test that has not committed; each test also gets a store of its own.
    """
    lookup.forget_rate_stores()
    key = (os.getpid(), "default")
    lookup._instances[key] = lookup.RateStore(poll_interval=0, background=False)
    yield lookup._instances[key]
    lookup.forget_rate_stores()
