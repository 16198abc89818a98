"""Model fields of the tenants app."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from tenants.networks import NetworkError, parse_network


class NetworkField(models.CharField):
    """A CIDR network (IPv4 or IPv6) stored in its normalised text form.

    Normalising in the field, rather than in a form, means the admin, the API, the
    importers and the resolver's lookups all agree on one spelling of a network.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 49)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == 49:
            del kwargs["max_length"]
        return name, path, args, kwargs

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            return parse_network(value)
        except NetworkError as exc:
            raise ValidationError(str(exc), code="invalid_network") from None

    def pre_save(self, model_instance, add):
        # Rows saved without full_clean() (scripts, fixtures) are normalised too, so
        # lookups by normalised text always find them. Lookups are not normalised
        # here: the resolver passes up to 129 networks per decision, already normal.
        value = getattr(model_instance, self.attname)
        if value not in self.empty_values:
            value = self.to_python(value)
            setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value):
        # CharField.get_prep_value() calls to_python(), which would parse each of the
        # 32 (IPv4) or 128 (IPv6) candidate networks of every routing decision again.
        # Values reaching here are normalised already (pre_save, containing_networks).
        return None if value is None else str(value)
