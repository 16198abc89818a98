"""/healthz: 200 while the database answers, 503 with the reason when it does not."""

from __future__ import annotations

import pytest

from tests.servers import database_unreachable


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
    with database_unreachable(tmp_path):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "reason": "database unavailable (OperationalError)",
    }
    # and it recovers as soon as the database is back
    assert client.get("/healthz").status_code == 200
