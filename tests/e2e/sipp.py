"""SIPp as the caller, as carriers and as a registering phone, with the scenarios in scenarios/.

Results come from SIPp itself: its exit status, and the lines its scenarios log
with <log> actions (-trace_logs): "final <code>" per call at the caller,
"invite ruri=... from=... x-route=... pai=..." per INVITE at a carrier.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.processes import HOST, Process, ProcessError, ProcessGroup, free_port, is_free

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

# Every SIPp run waits at most this long, whatever SIPp's own timers do: -timeout
# does not stop a caller reliably, so the test kills the process group itself.
RUN_LIMIT = 30.0

_INVITE = re.compile(
    r"^invite ruri=(?P<ruri>.*?)"
    r"(?: from=(?P<from>.*?) x-route=(?P<x_route>.*?) pai=(?P<pai>.*))?$"
)


@dataclass(frozen=True)
class Invite:
    """What a carrier saw in one INVITE (headers without their name, stripped)."""

    ruri: str
    from_: str = ""
    x_route: str = ""
    pai: str = ""


@dataclass(frozen=True)
class CallResult:
    returncode: int
    seconds: float
    finals: list[int]
    output: str

    def describe(self) -> str:
        return (
            f"SIPp exited {self.returncode} after {self.seconds:.2f} s, finals {self.finals}\n"
            f"--- SIPp output (tail) ---\n{self.output[-3000:]}"
        )


def _sipp_base(directory: Path, name: str, port: int | None = None) -> tuple[list[str], Path]:
    """Options every SIPp needs here: loopback only, its own ports, logs in `directory`."""
    log_file = directory / f"{name}-actions.log"
    argv = [
        "sipp",
        "-i", HOST,
        "-p", str(port or free_port()),
        "-mi", HOST,
        "-mp", str(free_port(span=4)),
        "-ci", HOST,
        "-cp", str(free_port()),
        "-nostdin",
        "-trace_logs", "-log_file", str(log_file),
        "-trace_err", "-error_file", str(directory / f"{name}-errors.log"),
    ]  # fmt: skip
    return argv, log_file


# free_port() finds a port free, but another process may still bind it before SIPp
# does; SIPp then exits at once, before sending anything, saying so in its error file:
# try again with new ports.
PORT_RACE_ATTEMPTS = 3


def _lost_a_port(directory: Path, name: str) -> bool:
    """Whether SIPp `name` exited because a port it was given was taken meanwhile (its
    error file is then cleared for the next attempt)."""
    errors = directory / f"{name}-errors.log"
    try:
        text = errors.read_text(errors="replace")
    except FileNotFoundError:
        return False
    if "Address already in use" not in text:
        return False
    errors.unlink()
    return True


class Carrier:
    """A SIPp UAS standing for a carrier's trunk, on 127.0.0.1:`port`."""

    def __init__(self, process: Process, port: int, log_file: Path) -> None:
        self.process = process
        self.port = port
        self.log_file = log_file

    def invites(self) -> list[Invite]:
        """The INVITEs this carrier received so far, in order."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            match = _INVITE.match(line.strip())
            if match:
                found.append(
                    Invite(
                        ruri=match["ruri"].strip(),
                        from_=(match["from"] or "").strip(),
                        x_route=(match["x_route"] or "").strip(),
                        pai=(match["pai"] or "").strip(),
                    )
                )
        return found


class Sipp:
    """Starts SIPp carriers (stopped with the test's processes) and runs callers."""

    def __init__(self, processes: ProcessGroup) -> None:
        self.processes = processes
        self.directory = processes.directory
        self._runs = 0

    def carrier(self, scenario: str, name: str, port: int | None = None) -> Carrier:
        """A carrier running scenarios/`scenario`.xml (carrier_answer, _reject, _ring, _silent),
        on `port` (a free one by default; a stopped carrier's, to stand for it recovering)."""
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            argv, log_file = _sipp_base(self.directory, name, port)
            sip_port = int(argv[argv.index("-p") + 1])
            argv += ["-sf", str(SCENARIOS / f"{scenario}.xml")]
            process = self.processes.start(name, argv, cwd=self.directory)
            # Ready when its SIP port is bound (SIPp prints nothing useful before).
            try:
                process.wait_until(
                    lambda p=sip_port: not is_free(p), what=f"{name} listening on {sip_port}"
                )
            except ProcessError:
                if attempt == PORT_RACE_ATTEMPTS or not _lost_a_port(self.directory, name):
                    raise
                continue
            return Carrier(process, sip_port, log_file)
        raise AssertionError("unreachable")

    def call(
        self,
        proxy_port: int,
        callee: str,
        *,
        calls: int = 2,
        rate: int = 10,
        caller: str = "3312",
        caller_name: str = "Alice",
        port: int | None = None,
        hold_ms: int = 100,
    ) -> CallResult:
        """Place `calls` calls to `callee` through the proxy; wait for all of them to end.

        `port` is the caller's own SIP port (the call's source port), else a free one.
        An answered call is hung up after `hold_ms`.
        """
        return self._run(
            "caller",
            proxy_port,
            [
                "-s",
                callee,
                "-m",
                str(calls),
                "-r",
                str(rate),
                "-d",
                str(hold_ms),
                "-pause_msg_ign",
            ],
            {"caller": caller, "caller_name": caller_name},
            port=port,
        )

    def register(self, proxy_port: int, user: str, contact_port: int) -> CallResult:
        """REGISTER `user` at the proxy with a Contact on 127.0.0.1:`contact_port`."""
        return self._run(
            "register", proxy_port, ["-m", "1"], {"user": user, "contact_port": str(contact_port)}
        )

    def _run(
        self,
        scenario: str,
        proxy_port: int,
        options: list[str],
        keys: dict[str, str],
        *,
        port: int | None = None,
    ) -> CallResult:
        """SIPp `scenario` against the proxy; a run that lost one of its ports before
        sending anything starts again on new ones."""
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            self._runs += 1
            name = f"{scenario}-{self._runs}"
            argv, log_file = _sipp_base(self.directory, name, port)
            argv[1:1] = [f"{HOST}:{proxy_port}", "-sf", str(SCENARIOS / f"{scenario}.xml")]
            argv += [*options, "-recv_timeout", "10000", "-timeout", f"{int(RUN_LIMIT) - 5}s"]
            for key, value in keys.items():
                argv += ["-key", key, value]
            result = self._execute(scenario, name, argv, log_file)
            if (
                attempt == PORT_RACE_ATTEMPTS
                or result.returncode == 0
                or result.finals
                or not _lost_a_port(self.directory, name)
            ):
                return result
        raise AssertionError("unreachable")

    def _execute(self, scenario: str, name: str, argv: list[str], log_file: Path) -> CallResult:
        """Run SIPp `argv` to its end (at most RUN_LIMIT); its finals from `log_file`."""
        output_path = self.directory / f"{name}.out"
        started = time.monotonic()
        with open(output_path, "wb") as output:
            popen = subprocess.Popen(
                argv,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                start_new_session=True,
            )
            try:
                returncode = popen.wait(RUN_LIMIT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
                raise ProcessError(
                    f"SIPp {scenario} did not finish in {RUN_LIMIT:.0f} s: {' '.join(argv)}\n"
                    + output_path.read_text(errors="replace")[-3000:]
                ) from None
        seconds = time.monotonic() - started
        finals = []
        if log_file.exists():
            for line in log_file.read_text(errors="replace").splitlines():
                if line.startswith("final "):
                    finals.append(int(line.split()[1]))
        return CallResult(returncode, seconds, finals, output_path.read_text(errors="replace"))
