"""routing.inline.memory_only: the database is refused inside, untouched outside."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from routing.inline import NeedsDatabase, memory_only
from tenants.models import Tenant
from tests.factories import make_tenant


def test_any_query_inside_raises_needs_database_before_touching_a_socket(db):
    make_tenant("acme", "192.0.2.0/24")
    with pytest.raises(NeedsDatabase), memory_only():
        Tenant.objects.first()
    with pytest.raises(NeedsDatabase), memory_only():
        connection.ensure_connection()
    assert Tenant.objects.get().slug == "acme"  # the real connection is back


def test_the_connection_is_put_back_as_it_was_whatever_happens_inside(db):
    before = connections["default"]
    with pytest.raises(ZeroDivisionError), memory_only():
        raise ZeroDivisionError
    assert connections["default"] is before


def test_a_thread_that_never_opened_a_connection_gets_a_fresh_one_after(transactional_db):
    make_tenant("acme", "192.0.2.0/24")
    seen: list[object] = []

    def run() -> None:
        try:
            with memory_only():
                pass
            seen.append(Tenant.objects.get().slug)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == ["acme"]


def test_other_threads_keep_their_database_meanwhile(transactional_db):
    make_tenant("acme", "192.0.2.0/24")
    inside, done = threading.Event(), threading.Event()
    seen: list[str] = []

    def other() -> None:
        inside.wait(5)
        try:
            seen.append(Tenant.objects.get().slug)
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with memory_only():
        inside.set()
        done.wait(5)
    thread.join()
    assert seen == ["acme"]
