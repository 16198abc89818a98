"""A caller on a tenant's blocklist is refused with the list's code, through real Kamailio.

The list is made through the REST API (as an operator would); SIPp places one call
from a listed caller and one from another caller to the same number, over each
transport (HTTP, http_async_client, EVAPI). The carrier must see exactly one INVITE.
"""

from __future__ import annotations

import shutil

import pytest

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_blocked_caller_gets_the_lists_code_and_the_carrier_no_invite(proxy, table, sipp, api):
    carrier = sipp.carrier("carrier_answer", "carrier-blocklist")
    table.route("33", table.trunk("answering", carrier.port))
    fraud = api.post(
        "blocklists",
        {"tenant": "e2e", "name": "Fraud", "kind": "caller", "reply_code": 403,
         "reply_reason": "Caller Blocked"},
    )  # fmt: skip
    api.post("blocklist-entries", {"list": fraud["id"], "value": "4420", "match": "prefix"})

    blocked = sipp.call(proxy.port, "33123456", calls=1, caller="442071234")
    routed = sipp.call(proxy.port, "33123456", calls=1, caller="3312")

    assert blocked.finals == [403], blocked.describe()
    assert routed.finals == [200], routed.describe()
    invites = carrier.invites()
    assert len(invites) == 1, invites
    assert "sip:3312@" in invites[0].from_, invites
