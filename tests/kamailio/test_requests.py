"""A CallRequest from Kamailio's fields, the same for both transports."""

from __future__ import annotations

import pytest

from kamailio.requests import CallFieldsError, call_request_from_fields


def test_callee_comes_from_callee_then_ruri_then_to():
    base = {"from_uri": "sip:+3312@pbx", "to_uri": "sip:+449@x", "ruri": "sip:+447@y"}
    assert call_request_from_fields({**base, "callee": "+1"}).callee == "+1"
    assert call_request_from_fields(base).callee == "+447"
    assert call_request_from_fields({**base, "ruri": ""}).callee == "+449"
    assert call_request_from_fields(base).caller == "+3312"


def test_call_fields_errors_name_the_field():
    with pytest.raises(CallFieldsError) as info:
        call_request_from_fields({"ruri": "http://x", "source_port": "eighty"})
    assert set(info.value.errors) == {"ruri", "callee", "source_port"}
    with pytest.raises(CallFieldsError) as info:
        call_request_from_fields({"callee": 33})
    assert info.value.errors == {"callee": "must be a string"}
