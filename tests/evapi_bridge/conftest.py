"""Fixtures of the bridge suites: a fake Kamailio, always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.evapi_bridge.fake_kamailio import FakeKamailio


@pytest.fixture
def kamailio() -> Iterator[FakeKamailio]:
    server = FakeKamailio()
    try:
        yield server
    finally:
        server.stop()
