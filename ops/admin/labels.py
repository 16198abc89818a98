"""Field labels as Kamailio and SIP people spell them.

A model field's verbose_name says `From URI` or `fr_inv_timer` (routing.models), but
Django capitalises every form label ("Fr_inv_timer"). A verbose_name with an
underscore is a Kamailio parameter name (tm's fr_timer, fr_inv_timer): its label is
kept exactly as written.
"""

from __future__ import annotations


def is_parameter_name(name: str) -> bool:
    return "_" in name and " " not in name


class KamailioLabelsMixin:
    """For ModelAdmin and inline classes whose model has such fields (Trunk)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        name = str(getattr(db_field, "verbose_name", ""))
        if formfield is not None and is_parameter_name(name):
            formfield.label = name
        return formfield
