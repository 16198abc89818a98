"""Property: no body, however broken, makes the routing endpoint answer a 5xx."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import call_body

FIELDS = [
    "event",
    "source_ip",
    "source_port",
    "call_id",
    "from_name",
    "from_uri",
    "from_tag",
    "to_name",
    "to_uri",
    "to_tag",
    "ruri",
    "caller",
    "callee",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    json_values
    | st.text(max_size=3000)
    | st.sampled_from(["sip:", "sip:@", "<sip:+33@h", "tel:", "sip:+33[::1]", "::ffff:1.2.3.4"])
    | st.builds(lambda n: "9" * n, st.integers(0, 200))
)
# Bodies shaped like a call with some fields broken, free-form JSON, and raw bytes.
mangled_calls = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6).map(
    lambda broken: json.dumps({**call_body(), **broken})
)
bodies = (
    mangled_calls
    | json_values.map(json.dumps)
    | st.binary(max_size=300)
    | st.builds(lambda n: "[" * n, st.integers(1, 20_000))
    | st.builds(lambda n: '{"callee": "' + "1" * n + '"}', st.integers(10_000, 40_000))
)


@pytest.mark.django_db
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_no_generated_body_gets_a_5xx(post_call, route_a, body):
    payload = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")

    response = post_call(payload)

    assert response.status_code in (200, 400), (response.status_code, response.content[:300])
    answer = response.json()
    if response.status_code == 200:
        assert answer["rtjson"].get("code") != 500
