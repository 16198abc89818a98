"""The rtjson view's shortcut validation accepts only what the serializer accepts, unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from api.serializers import CallRequestSerializer

FIELDS = list(CallRequestSerializer._declared_fields)

values = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(alphabet="0123456789.:abcdef[]", max_size=45),
    st.sampled_from(["192.0.2.7", " 192.0.2.7 ", "[2001:db8::1]", "::ffff:10.0.0.1", ""]),
    st.sampled_from(["a\x00b", "\ud800", "x" * 2000]),
    st.integers(min_value=-5, max_value=70000),
    st.sampled_from([True, 5060.0, "5060", [], {}]),
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from([*FIELDS, "unknown"]), values, max_size=len(FIELDS)),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
)


@settings(max_examples=600, deadline=None)
@given(bodies)
def test_the_shortcut_never_accepts_what_the_serializer_refuses_or_changes(body):
    fast = CallRequestSerializer.fast_validated_data(body)
    if fast is None:
        return  # the view runs the serializer, whatever it says
    serializer = CallRequestSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    assert dict(serializer.validated_data) == fast


def test_the_shortcut_takes_a_call_as_kamailio_sends_it():
    body = {
        "event": "sip-routing",
        "source_ip": "192.0.2.7",
        "source_port": 5060,
        "call_id": "a84b4c76e66710@pbx",
        "from_name": None,
        "from_uri": "sip:+33123456789@pbx.example.net",
        "from_tag": "1928301774",
        "to_name": "",
        "to_uri": "sip:+33612345678@sbc.example.net",
        "to_tag": "",
        "ruri": "sip:+33612345678@sbc.example.net",
    }
    fast = CallRequestSerializer.fast_validated_data(body)
    assert fast is not None
    assert "from_name" not in fast
    assert fast["source_port"] == 5060
