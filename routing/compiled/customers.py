"""A tenant's customers indexed for recognition: the candidates of a call in a few probes.

A wholesale tenant can have thousands of customers; trying each one's rules per
call would cost more than the route lookup. The index finds the candidates (its
default, those whose account is the call's, whose technical prefix starts the
callee, or whose network contains the source), and the resolver applies the rules
to those few (routing.resolver.recognise_customer): the rule lives once.
"""

from __future__ import annotations

from collections import defaultdict

from routing.rows import CustomerRow
from tenants.networks import IPAddress, NetworkIndex


class CustomerIndex:
    """One tenant's customers, by account, technical prefix and source network."""

    def __init__(self, customers: list[CustomerRow]) -> None:
        self.by_name = {customer.name: customer for customer in customers}
        self.default = next((c for c in customers if c.is_default), None)
        by_account: dict[str, list[CustomerRow]] = defaultdict(list)
        by_prefix: dict[str, list[CustomerRow]] = defaultdict(list)
        by_network: dict[str, list[CustomerRow]] = defaultdict(list)
        for customer in customers:
            if customer.account:
                by_account[customer.account].append(customer)
            if customer.tech_prefix:
                by_prefix[customer.tech_prefix].append(customer)
            for network in {network for network, _ in customer.sources}:
                by_network[network].append(customer)
        self.by_account = dict(by_account)
        self.by_prefix = dict(by_prefix)
        self.longest_prefix = max(map(len, self.by_prefix), default=0)
        self.networks = NetworkIndex((n, tuple(c)) for n, c in by_network.items())

    def candidates(self, *, address: IPAddress | None, callee: str, account: str):
        found: dict[int, CustomerRow] = {}
        if self.default is not None:
            found[self.default.id] = self.default
        for customer in self.by_account.get(account, ()) if account else ():
            found[customer.id] = customer
        for length in range(1, min(len(callee), self.longest_prefix) + 1):
            for customer in self.by_prefix.get(callee[:length], ()):
                found[customer.id] = customer
        if address is not None:
            for _, customers in self.networks.containing(address):
                for customer in customers:
                    found[customer.id] = customer
        return list(found.values())
