"""Answers by nosip: real UDP datagrams to a socket standing for Kamailio's SIP port.

Events come over a fake Kamailio's EVAPI connection (real TCP); each answer must
arrive exactly once, as a datagram or, when it cannot go that way (too large, the
kernel refuses it), over EVAPI, and the bridge counts which way each went.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from evapi_bridge.nosip import DEFAULT_MAX_BYTES, PROBE, NosipSender
from routing.compiled import CompiledRouteTable
from routing.tables import DatabaseRouteTable
from tests.evapi_bridge.fake_kamailio import FakeKamailio
from tests.evapi_bridge.test_bridge import by_tindex, event, running_bridge, without_id

pytestmark = pytest.mark.django_db(transaction=True)


class SipPort:
    """A UDP socket on 127.0.0.1 where Kamailio's SIP port would be."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def datagrams(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        self.sock.settimeout(timeout)
        return [json.loads(self.sock.recv(65536)) for _ in range(count)]

    def nothing_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(65536)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def sip_port() -> Iterator[SipPort]:
    port = SipPort()
    try:
        yield port
    finally:
        port.sock.close()


@pytest.fixture
def compiled(route_a, route_b, settings):
    settings.ROUTING_SCREEN_SOURCE = ""
    settings.ROUTING_RATE_SOURCE = ""
    table = CompiledRouteTable(background=False, poll_interval=3600)
    assert table.wait_ready(10)
    return table


def nosip_bridge(kamailio: FakeKamailio, port: int, table_factory, **options: Any):
    return running_bridge(
        kamailio, table_factory=table_factory, nosip=(("127.0.0.1", port),), **options
    )


EVENTS = [event(1), event(2, source_ip="198.51.100.7"), event(3, ruri="sip:+4930123@x.net")]


@pytest.mark.parametrize("path", ["inline", "worker"])
def test_answers_arrive_as_datagrams_and_not_over_evapi(path, kamailio, sip_port, compiled):
    # The compiled table decides in the event loop; the database table in the workers.
    factory = (lambda: compiled) if path == "inline" else DatabaseRouteTable
    with nosip_bridge(kamailio, sip_port.port, factory) as bridge:
        evapi = kamailio.accept()
        evapi.send_events(*EVENTS)
        answers = by_tindex(sip_port.datagrams(len(EVENTS)))
        assert evapi.nothing_within(0.3), "an answer also came over EVAPI"
    assert sorted(answers) == [1, 2, 3]
    assert answers[1]["routes"][0]["uri"].startswith("sip:+33612345678@")
    assert answers[2]["tenant"] == "tenant-b"  # each event its own answer
    assert answers[3]["success"] is False  # no route: answered all the same
    assert answers[1]["xtra"] == {"tindex": 1, "tlabel": 8}
    assert (bridge.totals.nosip, bridge.totals.nosip_fallbacks) == (3, 0)
    assert "answers by nosip 3, by EVAPI 0" in bridge.totals.summary(1)


def test_the_datagram_carries_the_same_bytes_as_the_evapi_answer(kamailio, sip_port, compiled):
    with running_bridge(kamailio, table_factory=lambda: compiled):
        evapi = kamailio.accept()
        evapi.send_events(event(1))
        (by_evapi,) = evapi.answers(1)
    with nosip_bridge(kamailio, sip_port.port, lambda: compiled):
        evapi = kamailio.accept()
        evapi.send_events(event(1))
        (by_nosip,) = sip_port.datagrams(1)
    # The same call decided twice: only its decision id differs.
    assert without_id(by_nosip) == without_id(by_evapi)
    assert by_nosip["xtra"] == by_evapi["xtra"]


def test_answers_over_the_max_bytes_go_over_evapi_and_smaller_ones_by_nosip(
    kamailio, sip_port, compiled
):
    # A routed answer (a route, its headers) is longer than a "no route" answer.
    sizes = {}
    with nosip_bridge(kamailio, sip_port.port, lambda: compiled):
        evapi = kamailio.accept()
        for number in (1, 3):
            evapi.send_events(EVENTS[number - 1])
            (answer,) = sip_port.datagrams(1)
            sizes[number] = len(json.dumps(answer, separators=(",", ":")))
    routed, unrouted = sizes[1], sizes[3]
    assert unrouted < routed
    limit = (routed + unrouted) // 2

    with nosip_bridge(kamailio, sip_port.port, lambda: compiled, nosip_max_bytes=limit) as bridge:
        evapi = kamailio.accept()
        evapi.send_events(EVENTS[0], EVENTS[2])
        (large,) = evapi.answers(1)
        (small,) = sip_port.datagrams(1)
        assert evapi.nothing_within(0.3)
        assert sip_port.nothing_within(0.1)
    assert (large["xtra"]["tindex"], small["xtra"]["tindex"]) == (1, 3)
    assert (bridge.totals.nosip, bridge.totals.nosip_fallbacks) == (1, 1)
    assert "answers by nosip 1, by EVAPI 1 (1 too large for nosip or refused)" in (
        bridge.totals.summary(1)
    )


def test_a_refused_port_sends_answers_over_evapi_until_it_accepts_again(kamailio, compiled):
    # Nothing listens on the SIP port: the first datagram goes out, the ICMP "port
    # unreachable" it draws makes the next send fail (ECONNREFUSED), and from then on
    # every answer goes over EVAPI, none lost every other one. (The first is lost, as
    # any datagram to a Kamailio that is down; docs/evapi.md.) Probes find the port
    # open again and answers go by nosip again.
    closed = SipPort()
    closed.sock.close()
    with nosip_bridge(kamailio, closed.port, lambda: compiled) as bridge:
        evapi = kamailio.accept()
        evapi.send_events(event(1))
        assert evapi.nothing_within(0.3)
        for tindex in (2, 3, 4):
            evapi.send_events(event(tindex))
            (answer,) = evapi.answers(1)
            assert answer["xtra"]["tindex"] == tindex
        sender = bridge.links[0].nosip
        assert sender.refused
        assert (sender.sent, sender.fallbacks) == (1, 3)

        reopened = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        reopened.bind(("127.0.0.1", closed.port))
        reopened.settimeout(0.3)
        probes, by_nosip = 0, None
        try:
            for tindex in range(5, 40):  # over EVAPI until a probe got through (1-2 s)
                evapi.send_events(event(tindex))
                try:
                    while (data := reopened.recv(65536)) == PROBE:
                        probes += 1
                    by_nosip = json.loads(data)
                    break
                except TimeoutError:
                    (answer,) = evapi.answers(1)
                    assert answer["xtra"]["tindex"] == tindex
        finally:
            reopened.close()
    assert by_nosip is not None, "answers never went by nosip again"
    assert by_nosip["xtra"]["tindex"] == tindex
    assert probes >= 1
    assert not sender.refused


def test_a_sender_whose_socket_fails_says_so_instead_of_raising(sip_port):
    sender = NosipSender("127.0.0.1", sip_port.port, max_bytes=DEFAULT_MAX_BYTES)
    payload = b'{"version":"1.0","routes":[],"xtra":{"tindex":1,"tlabel":2}}'
    assert sender.send(payload)
    sender.close()  # any OSError (EBADF here; EAGAIN, ENOBUFS in production)
    assert not sender.send(payload)
    assert "Bad file descriptor" in sender.last_error
    assert (sender.sent, sender.fallbacks) == (1, 1)
    assert sip_port.datagrams(1) == [json.loads(payload)]


def test_the_shared_key_goes_in_xtra(sip_port):
    sender = NosipSender("127.0.0.1", sip_port.port, max_bytes=DEFAULT_MAX_BYTES, key='s3"cret')
    assert sender.send(b'{"version":"1.0","routes":[],"xtra":{"tindex":1,"tlabel":2}}')
    (datagram,) = sip_port.datagrams(1)
    assert datagram["xtra"] == {"tindex": 1, "tlabel": 2, "key": 's3"cret'}


@pytest.mark.parametrize("max_bytes", [31, 65508])
def test_a_max_size_outside_what_a_datagram_can_carry_is_refused(max_bytes):
    with pytest.raises(ValueError, match="must be 32 to 65507"):
        NosipSender("127.0.0.1", 5060, max_bytes=max_bytes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--connect", "127.0.0.1:9", "--connect", "127.0.0.1:10", "--nosip", "127.0.0.1:5060"],
            "1 --nosip address(es) for 2 --connect address(es): give one --nosip per "
            "--connect, in the same order",
        ),
        (["--connect", "127.0.0.1:9", "--nosip", "127.0.0.1"], "--nosip '127.0.0.1': expected"),
        (
            ["--connect", "127.0.0.1:9", "--nosip", "no-such-host.invalid:5060"],
            "--nosip no-such-host.invalid:5060: cannot resolve",
        ),
        (
            ["--connect", "127.0.0.1:9", "--nosip", "127.0.0.1:5060", "--nosip-max-bytes", "70000"],
            "--nosip-max-bytes 70000: must be 32 to 65507 (the largest IPv4 UDP payload)",
        ),
    ],
)
def test_the_command_refuses_nosip_options_it_cannot_pair_or_use(options, message):
    with pytest.raises(CommandError) as error:
        call_command("run_evapi_bridge", *options)
    assert str(error.value).startswith(message)


def test_the_command_takes_nosip_addresses_from_the_settings(settings):
    settings.EVAPI_NOSIP = ["127.0.0.1:5060", "127.0.0.1:5061"]
    with pytest.raises(CommandError) as error:
        call_command("run_evapi_bridge", "--connect", "127.0.0.1:9")
    assert str(error.value).startswith("2 --nosip address(es) for 1 --connect address(es)")
