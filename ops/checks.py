"""System checks: refuse to start with settings that would make /metrics misbehave."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_metrics_networks(app_configs, **kwargs) -> list[Error]:
    errors = []
    for value in settings.METRICS_ALLOWED_NETWORKS:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            errors.append(
                Error(
                    f"METRICS_ALLOWED_NETWORKS: {value!r} is not an IP network "
                    "(write e.g. 10.0.0.0/8 or ::1/128).",
                    id="ops.E001",
                )
            )
    return errors
