"""A compiled route table: each process keeps a packed copy in memory, kept current.

- `packing`: how a tenant's routes are packed into arrays (PrefixTable);
- `loading`: what is read from the database, derived from routing.rows;
- `live`: the CompiledRouteTable that answers the RouteTable protocol and keeps
  itself current from the change log.
"""

from routing.compiled.live import CompiledRouteTable, compiled_route_table, forget_compiled_tables
from routing.compiled.packing import PrefixTable

__all__ = ["CompiledRouteTable", "PrefixTable", "compiled_route_table", "forget_compiled_tables"]
