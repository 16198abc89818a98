"""Words for operators in the admin: help on fields the models leave bare, empty states.

Kept out of the models on purpose: help text lives in migrations there, and these
are admin wording only (the models carry the help of every routing field).
"""

from __future__ import annotations

from typing import Any

from django.utils.html import conditional_escape

FIELD_HELP: dict[tuple[str, str], str] = {
    ("tenant", "description"): "Notes for the platform team; not used for routing.",
    ("tenantsource", "tenant"): "The tenant whose calls come from this network.",
    ("tenantsource", "description"): "What sits in this network, e.g. 'Paris office PBX'.",
    ("carrier", "tenant"): "The tenant this carrier serves; its operators alone see it.",
    ("carrier", "description"): "Notes for your team (account number, support contact); "
    "not used for routing.",
    ("trunk", "carrier"): "The carrier this trunk leads to; switching a carrier off "
    "switches off all its trunks.",
    ("dialprefix", "tenant"): "The tenant whose calls this route applies to.",
    ("dialprefix", "description"): "A name operators recognise, e.g. 'France mobiles'; "
    "shown in the simulator and logs, not used for matching.",
}

EMPTY_STATES: dict[str, str] = {
    "carrier": "No carrier yet. Start here: add the provider that terminates your calls, "
    "with its trunks (the SIP hosts Kamailio sends INVITEs to). Then add a dial prefix "
    "that routes numbers to those trunks.",
    "trunk": "No trunk yet. Trunks are added with their carrier: open a carrier (or add "
    "one) and use 'Add another Trunk'.",
    "dialprefix": "No route yet: every call gets 404 No Route. Add a dial prefix (e.g. 33 "
    "for France, or leave it empty for a default route) and pick the trunks it uses; "
    "then try a call in the route simulator.",
    "tenantsource": "No source network yet: calls are refused with 403 until a superuser "
    "adds the networks of the tenant's PBXs and SBCs.",
}


class OperatorHelpMixin:
    """For the route-table ModelAdmins and inlines: fill bare help texts, explain empty lists.

    Help texts are plain text here, and their examples show SIP syntax such as
    <sip:{caller}@trunk.example.net>. The admin renders help text as HTML, so it is
    escaped once for every field (text already marked safe is left as it is).
    """

    def formfield_for_dbfield(self, db_field, request, **kwargs: Any):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is None:
            return formfield
        key = (self.model._meta.model_name, db_field.name)
        if not formfield.help_text and key in FIELD_HELP:
            formfield.help_text = FIELD_HELP[key]
        if formfield.help_text:
            formfield.help_text = conditional_escape(formfield.help_text)
        return formfield

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "empty_state": EMPTY_STATES.get(self.model._meta.model_name, ""),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)
