"""The compiled store and the database source: exact, prefix, network; who a list applies to."""

from __future__ import annotations

import ipaddress
import random
import threading
import time

import pytest

from blocklists import services
from blocklists.lookup import BlockStore, PackedNumbers, database_blocked
from blocklists.models import BlocklistEntry
from tests.blocklists.conftest import make_list

pytestmark = pytest.mark.django_db

IP = ipaddress.ip_address


@pytest.fixture
def store(db) -> BlockStore:
    return BlockStore(poll_interval=0, background=False)


def both(store, *args):
    """The compiled answer, checked against the database's."""
    compiled = store.blocked(*args)
    assert compiled == database_blocked(*args), args
    return compiled


def test_an_exact_number_blocks_that_number_only(tenant_a, store):
    fraud = make_list(tenant_a, "Fraud", "caller", "33123456789\n", reply_code=603)
    block = both(store, tenant_a.pk, None, "33123456789", "44", None)
    assert (block.list_id, block.code, block.reason) == (fraud.pk, 603, "Blocked")
    assert (block.value, block.match, block.kind) == ("33123456789", "exact", "caller")
    assert both(store, tenant_a.pk, None, "331234567890", "44", None) is None
    assert both(store, tenant_a.pk, None, "3312345678", "44", None) is None


def test_a_prefix_blocks_every_number_under_it_and_the_longest_answers(tenant_a, store):
    make_list(tenant_a, "Premium", "callee", "4420*\n44209*\n4420912\n")
    assert both(store, tenant_a.pk, None, "", "442071234", None).value == "4420"
    block = both(store, tenant_a.pk, None, "", "4420955", None)
    assert (block.value, block.match) == ("44209", "prefix")
    exact = both(store, tenant_a.pk, None, "", "4420912", None)
    assert (exact.value, exact.match) == ("4420912", "exact")
    assert both(store, tenant_a.pk, None, "", "442", None) is None
    # The caller is not looked at by a callee list.
    assert both(store, tenant_a.pk, None, "4420912", "33", None) is None


def test_a_source_list_matches_the_most_specific_network(tenant_a, store):
    make_list(tenant_a, "Scanners", "source", "203.0.113.0/24\n203.0.113.128/25\n2001:db8:f::/48\n")
    assert both(store, tenant_a.pk, None, "1", "2", IP("203.0.113.200")).value == "203.0.113.128/25"
    assert both(store, tenant_a.pk, None, "1", "2", IP("203.0.113.7")).value == "203.0.113.0/24"
    block = both(store, tenant_a.pk, None, "1", "2", IP("2001:db8:f::1"))
    assert (block.value, block.match) == ("2001:db8:f::/48", "network")
    assert both(store, tenant_a.pk, None, "1", "2", IP("203.0.114.1")) is None
    assert both(store, tenant_a.pk, None, "1", "2", None) is None


def test_a_customer_list_applies_to_that_customer_only(
    tenant_a, initech, default_customer_a, store
):
    make_list(tenant_a, "Initech only", "callee", "900*\n", customer=initech)
    assert both(store, tenant_a.pk, initech.pk, "1", "900123", None).list_name == "Initech only"
    assert both(store, tenant_a.pk, default_customer_a.pk, "1", "900123", None) is None
    assert both(store, tenant_a.pk, None, "1", "900123", None) is None


def test_an_inactive_list_blocks_nothing(tenant_a, store):
    fraud = make_list(tenant_a, "Fraud", "caller", "3312*\n")
    assert both(store, tenant_a.pk, None, "33123", "1", None) is not None
    fraud.is_active = False
    services.save_list(user=None, blocklist=fraud)
    store.refresh()
    assert both(store, tenant_a.pk, None, "33123", "1", None) is None
    fraud.is_active = True
    services.save_list(user=None, blocklist=fraud)
    store.refresh()
    assert store.is_built(fraud.pk)
    assert both(store, tenant_a.pk, None, "33123", "1", None) is not None


def test_another_tenants_lists_never_apply(tenant_a, tenant_b, store):
    make_list(tenant_b, "Fraud", "caller", "3312*\n")
    assert both(store, tenant_a.pk, None, "33123", "33123", IP("192.0.2.1")) is None


def test_lists_are_tried_in_one_order(tenant_a, initech, store):
    """Source, caller, callee; the customer's own list before the tenant's; then by name."""
    make_list(tenant_a, "B callee", "callee", "1*\n")
    make_list(tenant_a, "A caller", "caller", "2*\n")
    make_list(tenant_a, "Z caller", "caller", "2*\n")
    make_list(tenant_a, "Own caller", "caller", "2*\n", customer=initech)
    assert both(store, tenant_a.pk, None, "2", "1", None).list_name == "A caller"
    assert both(store, tenant_a.pk, initech.pk, "2", "1", None).list_name == "Own caller"
    assert both(store, tenant_a.pk, None, "3", "1", None).list_name == "B callee"
    make_list(tenant_a, "Net", "source", "192.0.2.0/24\n")
    assert both(store, tenant_a.pk, None, "2", "1", IP("192.0.2.9")).list_name == "Net"


def test_compiled_and_database_sources_agree_on_random_lists(tenant_a, store):
    rng = random.Random(15)
    numbers = {str(rng.randint(1, 10 ** rng.randint(2, 12))) for _ in range(3000)}
    lines = [n + ("*" if rng.random() < 0.3 else "") for n in sorted(numbers)]
    make_list(tenant_a, "Random", "callee", "\n".join(lines) + "\n")
    nets = {f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24" for _ in range(300)}
    nets |= {f"10.{rng.randint(0, 255)}.0.0/16" for _ in range(30)}
    make_list(tenant_a, "Nets", "source", "\n".join(sorted(nets)) + "\n")
    probes = [
        *(n + str(rng.randint(0, 9999)) for n in rng.sample(sorted(numbers), 500)),
        *rng.sample(sorted(numbers), 300),
        *(str(rng.randint(1, 10**15)) for _ in range(300)),
        "1" * 20,
    ]
    hits = 0
    for digits in probes:
        address = IP(f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
        found = both(store, tenant_a.pk, None, None, digits, address)
        hits += found is not None
    assert 300 < hits < len(probes)


def test_a_change_is_used_after_the_next_poll(tenant_a, db):
    store = BlockStore(poll_interval=3600, background=False)
    fraud = make_list(tenant_a, "Fraud", "caller", "111\n")
    assert store.blocked(tenant_a.pk, None, "222", "1", None) is None
    services.save_entry(user=None, entry=BlocklistEntry(list=fraud, value="222"))
    assert store.blocked(tenant_a.pk, None, "222", "1", None) is None  # not polled yet
    store.refresh()
    assert store.blocked(tenant_a.pk, None, "222", "1", None).value == "222"
    services.delete_list(user=None, blocklist=fraud)
    store.refresh()
    assert store.blocked(tenant_a.pk, None, "111", "1", None) is None


def test_while_a_list_is_built_the_database_answers(tenant_a, db):
    store = BlockStore(poll_interval=0, background=True)
    fraud = make_list(tenant_a, "Fraud", "caller", "3312*\n")
    store._schedule_build = lambda list_id: store._building.__setitem__(list_id, 1)  # held
    store.refresh()
    assert fraud.pk in store._building
    assert not store.is_built(fraud.pk)
    assert store.blocked(tenant_a.pk, None, "331299", "1", None).value == "3312"


@pytest.mark.django_db(transaction=True)
def test_a_list_changed_elsewhere_is_live_within_a_second(tenant_a):
    """A background-building store, as in a web process: an import, then one more entry."""
    store = BlockStore(poll_interval=0.2, background=True)
    fraud = make_list(tenant_a, "Fraud", "caller", "\n".join(str(10**9 + n) for n in range(5000)))
    assert store.wait_ready(5)
    assert store.blocked(tenant_a.pk, None, "1000000042", "1", None) is not None

    def later():
        time.sleep(0.1)
        entry = BlocklistEntry(list=fraud, value="4477", match="prefix")
        services.save_entry(user=None, entry=entry)

    writer = threading.Thread(target=later)
    started = time.monotonic()
    writer.start()
    writer.join()
    while store.blocked(tenant_a.pk, None, "447712", "1", None) is None:
        assert time.monotonic() - started < 1.0, "not live within a second"
        time.sleep(0.02)
    assert store.wait_ready(5)
    assert store.is_built(fraud.pk)
    assert store.blocked(tenant_a.pk, None, "447712", "1", None).value == "4477"


def test_packed_numbers_cost_eight_bytes_an_entry():
    packed = PackedNumbers()
    for n in range(100_000):
        packed.add(str(4_400_000_000 + n * 7), "exact" if n % 2 else "prefix")
    packed.finish()
    size = packed.exact.buffer_info()[1] * 8 + packed.prefixes.buffer_info()[1] * 8
    assert size <= 100_000 * 8 * 1.2
    assert packed.find(str(4_400_000_000 + 14) + "99") == (str(4_400_000_000 + 14), "prefix")
    assert packed.find(str(4_400_000_000 + 7)) == (str(4_400_000_000 + 7), "exact")


def test_a_changed_answer_is_used_without_rebuilding_the_entries(tenant_a, db):
    store = BlockStore(poll_interval=0, background=False)
    fraud = make_list(tenant_a, "Fraud", "caller", "3312*\n")
    assert store.blocked(tenant_a.pk, None, "33123", "1", None).code == 403
    packed = store.packed(fraud.pk)
    fraud.reply_code, fraud.reply_reason = 603, "Decline"
    services.save_list(user=None, blocklist=fraud)
    block = store.blocked(tenant_a.pk, None, "33123", "1", None)
    assert (block.code, block.reason) == (603, "Decline")
    assert store.packed(fraud.pk) is packed  # the row was re-read, the entries kept


@pytest.mark.django_db(transaction=True)
def test_the_process_store_polls_from_its_own_thread(tenant_a, django_assert_num_queries):
    """As a web or bridge process's: decisions never wait on the database for it."""
    make_list(tenant_a, "Fraud", "caller", "3312*\n")
    store = BlockStore(poller=True, poll_interval=0.05)
    try:
        assert store.wait_ready(5)
        with django_assert_num_queries(0):
            assert store.blocked(tenant_a.pk, None, "33123", "1", None).value == "3312"
            assert store.blocked(tenant_a.pk, None, "44", "1", None) is None
    finally:
        store.stop()
