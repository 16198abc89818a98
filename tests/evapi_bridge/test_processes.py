"""evapi_bridge.processes.supervise: N children, restarted when they die, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.processes import ProcessGroup

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forks processes")

ROOT = Path(__file__).resolve().parents[2]

# A supervisor of two children that record their pid and number, then sleep until stopped.
PROGRAM = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from evapi_bridge import processes
    processes.RESTART_DELAY = 0.2
    out = Path(sys.argv[1])

    def child(number):
        (out / f"{number}-{os.getpid()}").touch()
        while True:
            time.sleep(0.05)

    sys.exit(processes.supervise(2, child))
    """
)


def started_children(directory: Path) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for path in directory.iterdir():
        number, pid = path.name.split("-")
        found.setdefault(int(number), []).append(int(pid))
    return found


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: its parent has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_children_are_restarted_when_they_die_and_stopped_with_the_supervisor(tmp_path):
    out = tmp_path / "children"
    out.mkdir()
    group = ProcessGroup(tmp_path)
    try:
        supervisor = group.start(
            "supervisor",
            [sys.executable, "-c", PROGRAM, str(out)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_for(lambda: sorted(started_children(out)) == [1, 2])
        first = started_children(out)
        os.kill(first[1][0], signal.SIGKILL)  # child 1 dies
        wait_for(lambda: len(started_children(out)[1]) == 2)
        (restarted,) = set(started_children(out)[1]) - {first[1][0]}
        assert alive(restarted)
        assert alive(first[2][0])
        supervisor.popen.send_signal(signal.SIGTERM)
        supervisor.popen.wait(10)
        assert supervisor.popen.returncode == 0
        assert not alive(restarted)
        assert not alive(first[2][0])
    finally:
        group.stop_all()
