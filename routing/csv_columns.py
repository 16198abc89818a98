"""The columns of the route-table CSV format, in order.

A module of its own, free of Django, so that tools outside the project's
processes (bench/generate.py) write exactly the format the importer reads.
"""

COLUMNS = (
    "prefix",
    "action",
    "routing_mode",
    "targets",
    "min_length",
    "max_length",
    "reject_code",
    "reject_reason",
    "description",
    "is_active",
)
