"""The admin: the operators' pages over the domain's models.

Django's autodiscovery imports this package (ops is an installed app); importing
the modules below registers every ModelAdmin. Registrations live here, with the
other operator pages, so that the domain apps (tenants, routing) import nothing of
the pages built on them.

- `scoping`: the admin side of the one tenant-scoping rule (tenants.scoping);
- `help`: operator wording (help texts, empty states);
- `tenants`, `routing`, `rating`, `blocklists`: the ModelAdmins; `imports`: CSV import
  and export pages; `versions`: staged plans (Versions, diff, rollback), route tests and
  the decision log.
"""

from ops.admin import blocklists, rating, routing, tenants, versions

__all__ = ["blocklists", "rating", "routing", "tenants", "versions"]
