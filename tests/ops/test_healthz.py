"""/healthz: 200 while the database answers, 503 with the reason when it does not."""

from __future__ import annotations

import pytest
from django.db import connection


def test_it_answers_ok_when_the_database_answers(client, db):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_needs_no_login_and_accepts_head(client, db):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_with_the_reason_when_the_database_is_gone(client, tmp_path):
    # Really break it: point the connection at a database that cannot be opened.
    real_name = connection.settings_dict["NAME"]
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "no-such-dir" / "db.sqlite3")
    else:
        connection.settings_dict["NAME"] = "routing_database_that_does_not_exist"
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = real_name

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "reason": "database unavailable (OperationalError)",
    }
    # and it recovers as soon as the database is back
    assert client.get("/healthz").status_code == 200
