"""The database timeouts of config/settings.py reach libpq through Django and psycopg."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from tests.reliability.conftest import require_postgresql

pytestmark = pytest.mark.django_db


def test_postgresql_connections_carry_the_timeouts():
    require_postgresql()
    options = settings.DATABASES["default"]["OPTIONS"]
    connection.ensure_connection()
    parameters = connection.connection.info.get_parameters()
    for name in ("connect_timeout", "keepalives_idle", "tcp_user_timeout"):
        assert parameters[name] == str(options[name])
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        shown = cursor.fetchone()[0]
    assert options["options"] == "-c statement_timeout=10000"
    assert shown == "10s"


def test_the_decision_deadline_is_well_under_kamailios_engine_timeout():
    # deploy/kamailio/*.cfg: ENGINE_TIMEOUT_MS 1000.
    assert 0 < settings.ROUTING_DECISION_DEADLINE_MS <= 500
