"""Decision ids: 32 hex digits, never repeated by a process, another prefix after a fork."""

from __future__ import annotations

import os
import re
import threading

from routing.ids import new_decision_id


def test_ids_are_32_hex_digits_and_never_repeat_across_threads():
    found: list[str] = []

    def make() -> None:
        found.extend(new_decision_id() for _ in range(20_000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == len(found) == 80_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in found[:100])


def test_a_forked_child_draws_its_own_prefix():
    parent = new_decision_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id and leave without running pytest's exit
        os.write(write, new_decision_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child[:16] != parent[:16]
