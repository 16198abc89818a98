"""/metrics: who may read it, what a decision adds, and several processes adding up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.models import KamailioToken
from tests.ops.test_simulator import FRANCE, simulate
from tests.servers import child_database_url, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_it_answers_the_loopback_in_prometheus_format(client, db):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE routing_decisions_total counter" in response.content.decode()


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.1.2.3"])
def test_allowed_networks_need_no_token(client, db, settings, address):
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]

    assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200


@pytest.mark.parametrize("address", ["203.0.113.5", "2001:db8::5", "not-an-address", ""])
def test_other_addresses_are_forbidden(client, settings, address):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", REMOTE_ADDR=address)

    assert response.status_code == 403
    assert "routing_decisions_total" not in response.content.decode()


def test_a_bearer_token_opens_it_from_anywhere_when_one_is_set(client, db, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    remote = {"REMOTE_ADDR": "203.0.113.5"}

    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", **remote)
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess", **remote)
    token_scheme = client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-scrape-token", **remote)
    assert (ok.status_code, wrong.status_code, token_scheme.status_code) == (200, 403, 403)


def test_an_empty_token_setting_never_matches_an_empty_bearer(client, settings):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", REMOTE_ADDR="203.0.113.5")

    assert response.status_code == 403


def test_a_decision_increments_its_transport_and_outcome(client, superuser, route_a):
    def scrape() -> str:
        return client.get("/metrics").content.decode()

    before = scrape()
    simulate(client, superuser, tenant="tenant-a", **FRANCE)
    simulate(client, superuser, tenant="tenant-a", callee="999", caller="1")  # no route
    after = scrape()

    labels = {"transport": "simulator"}
    for outcome, added in (("routed", 1), ("no_route", 1), ("rejected", 0)):
        name = "routing_decisions_total"
        delta = sample(after, name, outcome=outcome, **labels) - sample(
            before, name, outcome=outcome, **labels
        )
        assert delta == added, outcome
    count = "routing_decision_seconds_count"
    assert sample(after, count, **labels) - sample(before, count, **labels) == 2


def test_a_bad_allowed_network_stops_the_server_at_startup(settings):
    from ops.checks import check_metrics_networks

    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "10.0.0.300/8"]

    (error,) = check_metrics_networks(None)
    assert error.id == "ops.E001"
    assert "'10.0.0.300/8'" in error.msg


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_processes_add_up_in_multiprocess_mode(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    observe = (
        "from routing.metrics import observe_decision; "
        "observe_decision('http', 'routed', 0.001); observe_decision('evapi', 'error', 0.002)"
    )
    _python(observe, env)
    _python(observe, env)

    text = _python("from routing.metrics import exposition; print(exposition()[0].decode())", env)

    assert sample(text, "routing_decisions_total", transport="http", outcome="routed") == 2
    assert sample(text, "routing_decisions_total", transport="evapi", outcome="error") == 2
    assert sample(text, "routing_decision_seconds_count", transport="http") == 2


def _call(base: str, key: str) -> dict:
    body = json.dumps(
        {
            "event": "sip-routing",
            "source_ip": "192.0.2.7",
            "source_port": 5060,
            "call_id": "gunicorn-metrics@pbx",
            "from_name": "",
            "from_uri": "sip:3312@pbx.example",
            "from_tag": "t1",
            "to_name": "",
            "to_uri": "sip:+33612345678@pbx.example",
            "to_tag": "",
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310
        f"{base}/api/v1/kamailio/rtjson",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Token {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_add_up_in_metrics_with_the_shipped_config(tmp_path, route_a):
    token = KamailioToken(name="kamailio-test")
    key = token.set_new_key()
    token.save()
    port = free_tcp_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999.db").write_bytes(b"stale file from a previous run")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "SECRET_KEY": "gunicorn-test-key",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": child_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = urllib.request.urlopen(f"{base}/healthz", timeout=2)  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert health.status == 200
        assert not (metrics_dir / "counter_999.db").exists()  # wiped at start

        answers = [_call(base, key) for _ in range(20)]  # a new connection each

        assert all(a["rtjson"]["success"] for a in answers)
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()  # noqa: S310
        assert sample(text, "routing_decisions_total", transport="http", outcome="routed") == 20
        assert sample(text, "routing_decision_seconds_count", transport="http") == 20
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
