"""Id filters of the REST API take whole numbers in a 64-bit range, else a 400.

The fuzzer found `?trunk=-3e124` on /api/v1/prefixes a 500 on SQLite (OverflowError:
the decimal could not be bound); PostgreSQL compared it quietly.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api(operator_a) -> APIClient:
    client = APIClient()
    client.force_authenticate(operator_a)
    return client


@pytest.mark.parametrize(
    ("url", "name"), [("/api/v1/prefixes", "trunk"), ("/api/v1/trunks", "carrier")]
)
@pytest.mark.parametrize("value", ["-3.026850828586245e+124", str(2**63), "1.5"])
def test_an_id_filter_out_of_range_or_fractional_is_a_400(api, route_a, url, name, value):
    response = api.get(url, {name: value})

    assert response.status_code == 400
    assert name in response.json()


def test_an_id_filter_still_filters(api, route_a, trunks_a):
    response = api.get("/api/v1/prefixes", {"trunk": trunks_a[0].pk})

    assert response.status_code == 200
    assert [row["prefix"] for row in response.json()["results"]] == ["33"]
