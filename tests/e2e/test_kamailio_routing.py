"""Real SIP calls through a real Kamailio, routed by this project over HTTP and over EVAPI.

Each test starts a Kamailio with a shipped config (deploy/kamailio/), the engine
it asks (gunicorn with the rtjson endpoint, or `manage.py run_evapi_bridge`, its answers
over EVAPI or, for these cases only, by nosip datagrams: proxy "evapi-nosip"),
SIPp carriers and a SIPp caller, and loads the route table through the REST API.
What is asserted comes from SIPp: the final code each call got at the caller, and
the INVITEs each carrier received (with the headers a trunk sets).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import sys
import threading
from datetime import UTC, datetime

import pytest

from tests.e2e.processes import HOST, free_port
from tests.e2e.services import BASE_DIR, HTTP_ASYNC, service_env

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(
        f"end-to-end tests need {' and '.join(_missing)} on PATH "
        "(Debian: kamailio kamailio-extra-modules kamailio-json-modules "
        "kamailio-utils-modules sip-tester)",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A call that Kamailio refuses for want of an engine must not wait for a transaction
# timer (fr_timer is 5 s here, the INVITE transaction 32 s): two calls, SIPp's start
# and exit included, well under that.
FAST = 2.0


# --- Both paths -----------------------------------------------------------------------


def test_serial_failover_completes_the_call_on_the_next_trunk(proxy, table, sipp):
    down = sipp.carrier("carrier_reject", "carrier-down")
    up = sipp.carrier("carrier_answer", "carrier-up")
    table.route("33", table.trunk("down", down.port), table.trunk("up", up.port))

    result = sipp.call(proxy.port, "33123", calls=3)

    assert result.returncode == 0, result.describe()
    assert result.finals == [200, 200, 200], result.describe()
    down.process.stop()
    up.process.stop()
    assert [i.ruri for i in down.invites()] == [f"sip:33123@{HOST}:{down.port}"] * 3
    assert [i.ruri for i in up.invites()] == [f"sip:33123@{HOST}:{up.port}"] * 3


def test_serial_failover_moves_on_when_a_trunk_does_not_answer_within_its_fr_timer(
    proxy, table, sipp
):
    silent = sipp.carrier("carrier_silent", "carrier-silent")
    up = sipp.carrier("carrier_answer", "carrier-up")
    table.route("33", table.trunk("silent", silent.port, fr_timer=500), table.trunk("up", up.port))

    result = sipp.call(proxy.port, "33123")

    assert result.returncode == 0, result.describe()
    assert result.finals == [200, 200], result.describe()
    # The trunk's 500 ms, from the route table via rtjson, not tm's 5 s default.
    assert result.seconds < FAST, result.describe()
    silent.process.stop()
    up.process.stop()
    assert len(silent.invites()) == 2
    assert len(up.invites()) == 2


def test_parallel_routing_rings_every_trunk(proxy, table, sipp):
    ringing = sipp.carrier("carrier_ring", "carrier-ringing")
    answering = sipp.carrier("carrier_answer", "carrier-answering")
    table.route(
        "44",
        table.trunk("ringing", ringing.port),
        table.trunk("answering", answering.port),
        mode="parallel",
    )

    result = sipp.call(proxy.port, "44123")

    assert result.returncode == 0, result.describe()
    assert result.finals == [200, 200], result.describe()
    ringing.process.stop()
    answering.process.stop()
    # Both were rung for each call; the one that rang only was cancelled.
    assert len(ringing.invites()) == 2
    assert len(answering.invites()) == 2


def test_reject_route_and_missing_route_give_their_sip_code(proxy, table, sipp):
    table.action("190", "reject", reject_code=403, reject_reason="Barred Destination")

    rejected = sipp.call(proxy.port, "1900123")
    unrouted = sipp.call(proxy.port, "5550123")

    assert rejected.finals == [403, 403], rejected.describe()
    # 404 No Route, not the other tenant's 480: its table never serves this caller.
    assert unrouted.finals == [404, 404], unrouted.describe()


def test_location_route_reaches_the_registered_user(proxy, table, sipp):
    phone = sipp.carrier("carrier_answer", "phone-7001")
    table.action("700", "location")

    before = sipp.call(proxy.port, "7001")
    registered = sipp.register(proxy.port, "7001", phone.port)
    after = sipp.call(proxy.port, "7001")

    # Not registered yet: Kamailio's lookup("location") answers 404.
    assert before.finals == [404, 404], before.describe()
    assert registered.returncode == 0, registered.describe()
    assert after.returncode == 0, after.describe()
    assert after.finals == [200, 200], after.describe()
    phone.process.stop()
    assert [i.ruri for i in phone.invites()] == [f"sip:7001@{HOST}:{phone.port}"] * 2


def test_trunk_headers_and_from_rewrite_reach_the_carrier(proxy, table, sipp):
    carrier = sipp.carrier("carrier_answer", "carrier-headers")
    trunk = table.trunk(
        "rewriting",
        carrier.port,
        from_display="Acme Out",
        from_uri="sip:+{caller}@acme.example",
        extra_headers="X-Route: e2e-{callee}\nP-Asserted-Identity: <sip:+{caller}@acme.example>",
    )
    table.route("33", trunk)

    result = sipp.call(proxy.port, "33999", calls=1)

    assert result.finals == [200], result.describe()
    carrier.process.stop()
    [invite] = carrier.invites()
    assert "Acme Out" in invite.from_
    assert "<sip:+3312@acme.example>" in invite.from_
    assert invite.x_route == "e2e-33999"
    assert invite.pai == "<sip:+3312@acme.example>"


# --- The engine is not there, or not right: a fast 5xx ----------------------------------


@pytest.fixture
def black_hole():
    """A TCP port that accepts connections and never answers (a hung engine)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((HOST, 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("client", ["http", HTTP_ASYNC])
@pytest.mark.parametrize("engine", ["stopped", "wrong-token", "not-rtjson", "hung"])
def test_http_calls_fail_fast_with_503_when_the_engine_cannot_answer(
    client, engine, request, start_kamailio, web_server, kamailio_token, sipp
):
    url = f"{web_server.url}/api/v1/kamailio/rtjson"
    token = kamailio_token
    limit = FAST
    if engine == "stopped":  # nothing listens there: connection refused
        url = f"http://{HOST}:{free_port()}/api/v1/kamailio/rtjson"
    elif engine == "wrong-token":  # 403 from the endpoint
        token = "not-a-token"
    elif engine == "not-rtjson":  # a 404 page, not an answer
        url = f"{web_server.url}/api/v1/kamailio/nothing-here"
    else:  # accepts and never answers: each call waits for the engine timeout (1 s here)
        url = f"http://{HOST}:{request.getfixturevalue('black_hole')}/rtjson"
        limit = FAST + 1.0
    kamailio = start_kamailio(
        client, ENGINE_URL=url, ENGINE_TOKEN=token, ENGINE_TIMEOUT_S=1, ENGINE_TIMEOUT_MS=1000
    )

    result = sipp.call(kamailio.port, "33123")

    assert result.finals == [503, 503], result.describe()
    assert result.seconds < limit, result.describe()


def test_evapi_calls_fail_fast_with_503_without_a_bridge(start_kamailio, start_bridge, table, sipp):
    evapi_without_a_bridge("evapi", start_kamailio, start_bridge, table, sipp)


def evapi_without_a_bridge(path: str, start_kamailio, start_bridge, table, sipp) -> None:
    """Before a bridge connects and after it leaves, calls get a 503 at once (config `path`)."""
    carrier = sipp.carrier("carrier_answer", "carrier")
    table.route("33", table.trunk("up", carrier.port))
    kamailio = start_kamailio(path)

    never_connected = sipp.call(kamailio.port, "33123")
    bridge = start_bridge(kamailio)
    connected = sipp.call(kamailio.port, "33123")
    seen = len(kamailio.process.log())
    bridge.stop()
    kamailio.process.wait_for_log("disconnected", after=seen)
    stopped = sipp.call(kamailio.port, "33123")

    assert never_connected.finals == [503, 503], never_connected.describe()
    assert never_connected.seconds < FAST, never_connected.describe()
    assert connected.finals == [200, 200], connected.describe()
    assert stopped.finals == [503, 503], stopped.describe()
    assert stopped.seconds < FAST, stopped.describe()


def test_evapi_closes_engines_from_networks_it_does_not_allow(
    start_kamailio, processes, web_server, sipp
):
    kamailio = start_kamailio("evapi", EVAPI_ALLOWED_NETWORKS="192.0.2.0/24")
    processes.start(
        "bridge",
        [
            sys.executable,
            "manage.py",
            "run_evapi_bridge",
            "--connect",
            f"{HOST}:{kamailio.evapi_port}",
        ],
        cwd=BASE_DIR,
        env=service_env(),
    )
    kamailio.process.wait_for_log("refused: not in EVAPI_ALLOWED_NETWORKS")

    result = sipp.call(kamailio.port, "33123")

    assert result.finals == [503, 503], result.describe()
    assert result.seconds < FAST, result.describe()


class BrokenEngine:
    """An EVAPI client that answers each event with a fixed document (plus its xtra).

    It stands for an engine that answers but not with rtjson, or (`answer` None)
    reads events and never answers, which the real bridge never does: Kamailio
    must still reply, and fast.
    """

    def __init__(self, port: int, answer: dict | None) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                buffer += chunk
                while b":" in buffer:
                    size, _, rest = buffer.partition(b":")
                    if len(rest) < int(size) + 1:
                        break
                    event, buffer = json.loads(rest[: int(size)]), rest[int(size) + 1 :]
                    if self.answer is None:
                        continue
                    xtra = {"tindex": event["tindex"], "tlabel": event["tlabel"]}
                    payload = json.dumps({**self.answer, "xtra": xtra}).encode()
                    self.sock.sendall(b"%d:%s," % (len(payload), payload))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(2)


@pytest.mark.parametrize(
    "answer",
    [{"version": "1.0"}, {"success": True, "routing": "sideways", "routes": []}, None],
    ids=["no-success-field", "unknown-routing", "no-answer"],
)
def test_evapi_engine_that_does_not_answer_rtjson_gets_the_call_a_fast_503(
    answer, start_kamailio, sipp
):
    # No answer: each call waits ENGINE_TIMEOUT_MS (1 s), not the 5 s fr_timer.
    limit = FAST if answer is not None else FAST + 1.0
    kamailio = start_kamailio("evapi", ENGINE_TIMEOUT_MS=1000)
    seen = len(kamailio.process.log())
    engine = BrokenEngine(kamailio.evapi_port, answer)
    try:
        kamailio.process.wait_for_log("routing engine connected from", after=seen)
        result = sipp.call(kamailio.port, "33123")
    finally:
        engine.close()

    assert result.finals == [503, 503], result.describe()
    assert result.seconds < limit, result.describe()


def test_two_customers_of_one_tenant_are_routed_by_their_own_plans(proxy, table, sipp, api):
    """One tenant, one carrier, two plans: a PBX recognised by its source port and a
    customer recognised by its technical prefix get Premium; every other call, the
    tenant's default customer, Standard (the plan every tenant starts with)."""
    standard = sipp.carrier("carrier_answer", "carrier-standard")
    premium = sipp.carrier("carrier_answer", "carrier-premium")
    table.route("33", table.trunk("standard", standard.port))
    plan = api.post("routing-plans", {"tenant": "e2e", "name": "Premium"})["id"]
    premium_trunk = table.trunk("premium", premium.port)
    api.post(
        "prefixes",
        {"tenant": "e2e", "plan": plan, "prefix": "33", "targets": [{"trunk": premium_trunk}]},
    )
    pbx_port = free_port()
    api.post(
        "customers",
        {"tenant": "e2e", "name": "PBX on its own port", "plan": plan,
         "sources": [{"network": "127.0.0.1/32", "port": pbx_port}]},
    )  # fmt: skip
    api.post(
        "customers", {"tenant": "e2e", "name": "Umbrella", "plan": plan, "tech_prefix": "4711"}
    )

    by_port = sipp.call(proxy.port, "33123", calls=1, port=pbx_port)
    walk_in = sipp.call(proxy.port, "33124", calls=1)
    by_prefix = sipp.call(proxy.port, "471133125", calls=1)

    for result in (by_port, walk_in, by_prefix):
        assert result.finals == [200], result.describe()
    standard.process.stop()
    premium.process.stop()
    assert [i.ruri for i in premium.invites()] == [
        f"sip:33123@{HOST}:{premium.port}",
        f"sip:33125@{HOST}:{premium.port}",  # the technical prefix is gone
    ]
    assert [i.ruri for i in standard.invites()] == [f"sip:33124@{HOST}:{standard.port}"]


def test_least_cost_fails_over_to_the_next_cheapest_and_skips_a_vendor_above_the_margin(
    proxy, table, sipp, api
):
    """Three vendors with rate decks for 33; the plan sells at 0.0200 with a 10% margin.
    The cheapest answers 503: the call completes at the next cheapest. The third is
    cheaper than nothing but above the margin (0.0190 > 0.0180): it never gets an INVITE."""
    from rating.importing import import_deck
    from routing.models import Carrier, RoutingPlan

    cheapest = sipp.carrier("carrier_reject", "cheapest-rejects")
    next_cheapest = sipp.carrier("carrier_answer", "next-cheapest")
    above_margin = sipp.carrier("carrier_answer", "above-margin")
    header = "prefix,description,rate,connect_fee,initial_increment,next_increment\n"
    trunks = []
    for name, carrier_sipp, rate in [
        ("Above margin", above_margin, "0.0190"),
        ("Next cheapest", next_cheapest, "0.0120"),
        ("Cheapest", cheapest, "0.0100"),
    ]:
        carrier = api.post("carriers", {"tenant": "e2e", "name": name})["id"]
        trunks.append(
            api.post(
                "trunks",
                {"carrier": carrier, "name": name.lower().replace(" ", "-"), "host": HOST,
                 "port": carrier_sipp.port},
            )["id"]
        )  # fmt: skip
        import_deck(
            lambda rate=rate: io.StringIO(header + f"33,France,{rate},0,60,60\n"),
            carrier=Carrier.objects.get(pk=carrier),
            effective_from=datetime(2026, 1, 1, tzinfo=UTC),
            currency="EUR",
        )
    import_deck(
        lambda: io.StringIO(header + "33,France,0.0200,0,60,60\n"),
        plan=RoutingPlan.objects.get(tenant__slug="e2e"),
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        currency="EUR",
    )
    api.post(
        "prefixes",
        {"tenant": "e2e", "prefix": "33", "strategy": "lcr", "margin_percent": "10",
         "targets": [{"trunk": trunk} for trunk in trunks]},
    )  # fmt: skip

    result = sipp.call(proxy.port, "33123", calls=2)

    assert result.returncode == 0, result.describe()
    assert result.finals == [200, 200], result.describe()
    for carrier_sipp in (cheapest, next_cheapest, above_margin):
        carrier_sipp.process.stop()
    assert len(cheapest.invites()) == 2
    assert len(next_cheapest.invites()) == 2
    assert above_margin.invites() == []


def test_a_trunk_with_486_as_a_failover_code_fails_over_on_busy_and_the_default_does_not(
    proxy, table, sipp
):
    """Per-trunk failover codes reach Kamailio in each rtjson route ("failover")."""
    busy_moves_on = sipp.carrier("carrier_busy", "busy-fails-over")
    busy_final = sipp.carrier("carrier_busy", "busy-is-final")
    up = sipp.carrier("carrier_answer", "carrier-up")
    up_trunk = table.trunk("up", up.port)
    table.route(
        "33", table.trunk("busy486", busy_moves_on.port, failover_codes="5xx, 486"), up_trunk
    )
    table.route("44", table.trunk("busy", busy_final.port), up_trunk)

    fails_over = sipp.call(proxy.port, "33123", calls=1)
    stays_busy = sipp.call(proxy.port, "44123", calls=1)

    assert fails_over.finals == [200], fails_over.describe()
    assert stays_busy.finals == [486], stays_busy.describe()
    for carrier in (busy_moves_on, busy_final, up):
        carrier.process.stop()
    assert len(busy_moves_on.invites()) == len(busy_final.invites()) == 1
    assert [i.ruri for i in up.invites()] == [f"sip:33123@{HOST}:{up.port}"]  # not 44123
