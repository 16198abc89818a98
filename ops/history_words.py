"""How history diffs write values: yes/no for booleans, not Python's True/False.

One helper for the objects' History pages (SimpleHistoryAdmin's hook, through
ops.history.TenantHistoryMixin) and the recent-changes list (ops.history._describe).
"""

from __future__ import annotations

from typing import Any

from simple_history.template_utils import HistoricalRecordContextHelper


def yes_no(value: Any) -> Any:
    """yes / no for a boolean; anything else as it is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


class WordsContextHelper(HistoricalRecordContextHelper):
    def prepare_delta_change_value(self, change, value):
        return yes_no(super().prepare_delta_change_value(change, value))
