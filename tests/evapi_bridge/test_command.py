"""manage.py run_evapi_bridge: argument checks, and the real command stopped by SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from evapi_bridge.management.commands.run_evapi_bridge import Command, parse_address
from tests.evapi_bridge.fake_kamailio import FakeKamailio
from tests.servers import child_database_url

MANAGE = Path(settings.BASE_DIR) / "manage.py"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8448", ("127.0.0.1", 8448)),
        ("kamailio.internal:9000", ("kamailio.internal", 9000)),
        ("[::1]:8448", ("::1", 8448)),
        (" 10.0.0.1:1 ", ("10.0.0.1", 1)),
    ],
)
def test_it_reads_host_port_addresses(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "expected HOST:PORT"),
        (":8448", "expected HOST:PORT"),
        ("127.0.0.1:", "port '' is not a number from 1 to 65535"),
        ("127.0.0.1:0", "port '0' is not a number"),
        ("127.0.0.1:70000", "port '70000' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("::1:8448", "write an IPv6 address as [ADDRESS]:PORT"),
        ("my host:8448", "expected HOST:PORT"),
    ],
)
def test_it_refuses_a_bad_address_with_a_clear_error(text, message):
    with pytest.raises(CommandError, match="--connect") as error:
        call_command("run_evapi_bridge", "--connect", text)
    assert message in str(error.value)


@pytest.mark.django_db
def test_it_refuses_an_unknown_tenant_at_start_up(tenant_a, tenant_b):
    with pytest.raises(CommandError) as error:
        call_command("run_evapi_bridge", "--connect", "127.0.0.1:9", "--tenant", "tenant-x")
    assert str(error.value) == (
        "Unknown tenant slug 'tenant-x' (--tenant or EVAPI_DEFAULT_TENANT); "
        "known: tenant-a, tenant-b"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--workers", "0"], "--workers 0: must be at least 1"),
        (["--stats-interval", "-1"], "--stats-interval must be 0 (off) or a number of seconds"),
        (["--max-wait", "0"], "--max-wait must be a positive number of seconds"),
    ],
)
def test_it_refuses_bad_numbers(option, message):
    with pytest.raises(CommandError, match="must be") as error:
        call_command("run_evapi_bridge", "--connect", "127.0.0.1:9", *option)
    assert str(error.value) == message


def test_it_says_when_events_without_source_ip_will_be_refused(caplog):
    caplog.set_level(logging.INFO, logger="evapi_bridge")
    Command()._announce_tenant(None)
    assert caplog.messages == [
        "events without source_ip will be refused (403): no --tenant and "
        "EVAPI_DEFAULT_TENANT is empty"
    ]


class StderrLines:
    """The child's stderr, read in a thread so that it never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        with self.changed:
            found = self.changed.wait_for(lambda: any(text in x for x in self.lines), timeout)
        assert found, f"{text!r} not logged; stderr:\n" + "\n".join(self.lines)


@pytest.fixture
def bridge_process(
    transactional_db, route_a
) -> Iterator[tuple[subprocess.Popen, StderrLines, FakeKamailio]]:
    """`manage.py run_evapi_bridge` in a child process, on the test database."""
    kamailio = FakeKamailio()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "test-only",
        "DATABASE_URL": child_database_url(),
        "LOG_LEVEL": "INFO",
        # A 500-event burst is a backlog by design: decided, not shed at the deadline.
        "ROUTING_DECISION_DEADLINE_MS": "120000",
    }
    command = [sys.executable, str(MANAGE), "run_evapi_bridge", "--connect", kamailio.address]
    process = subprocess.Popen(
        [*command, "--tenant", "tenant-a", "--workers", "2", "--max-wait", "120"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, StderrLines(process), kamailio
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        kamailio.stop()


def test_sigterm_stops_the_command_with_exit_0_after_answering_events_in_flight(bridge_process):
    process, stderr, kamailio = bridge_process
    evapi = kamailio.accept()
    stderr.wait_for(f"connected to {kamailio.address}")
    stderr.wait_for("events without source_ip go to tenant tenant-a (Tenant A)")
    count = 500
    evapi.send_events(
        *(
            {"event": "sip-routing", "tindex": n, "tlabel": n, "callee": "+33612345678"}
            for n in range(count)
        )
    )
    first = evapi.answers(1)  # the bridge has read the burst and is deciding
    process.send_signal(signal.SIGTERM)
    rest = evapi.answers(count - 1)
    assert evapi.read_until_closed() == b"", "the bridge kept the connection open"
    assert process.wait(30) == 0
    tindexes = sorted(answer["xtra"]["tindex"] for answer in first + rest)
    assert tindexes == list(range(count))
    assert all(answer["tenant"] == "tenant-a" for answer in first + rest)
    stderr.thread.join(10)
    assert any("stopping: answering" in line for line in stderr.lines), stderr.lines
    assert any(f"{count} events, {count} answers" in line for line in stderr.lines), stderr.lines
