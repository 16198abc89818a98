"""A plain `pip install .` (not editable) is the whole project: it starts and serves the admin.

The installed copy runs in a Python that cannot see the checkout: `-S` skips the venv's
.pth files (the editable install's finder maps packages back to a checkout) and the path
holds only the install target and the venv's site-packages.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.template.loader import get_template
from django.urls import reverse

CHECKOUT = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"tests", "bench"}

# setuptools writes build/ and *.egg-info next to the sources: the build works on a copy,
# so a stale build/ cannot hide a missing file and the checkout stays clean.
COPY_IGNORES = shutil.ignore_patterns(
    ".*", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", "staticfiles", "*.sqlite3"
)

# Runs inside the installed copy. argv: install target, checkout.
SMOKE = """
import importlib
import sys
from pathlib import Path

import django

target, checkout = Path(sys.argv[1]), Path(sys.argv[2])
django.setup()

from django.core.management import call_command
from django.template.loader import get_template
from django.test import Client
from django.urls import reverse

from tenants.models import User

for name in sys.argv[3:]:
    module = importlib.import_module(name)
    assert Path(module.__file__).is_relative_to(target), module.__file__

origin = Path(get_template("admin/ops/simulator.html").origin.name)
assert origin.is_relative_to(target / "ops"), origin

call_command("migrate", verbosity=0)
User.objects.create_superuser("root", "root@example.com", "pw")
client = Client()
client.force_login(User.objects.get())
index = client.get(reverse("admin:index"))
assert index.status_code == 200, index.status_code
assert 'id="operations-module"' in index.text, "the admin index is not the project's"
simulator = client.get(reverse("ops:simulator"))
assert simulator.status_code == 200, simulator.status_code

loaded = [Path(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
# The virtualenv may live inside the checkout (.venv): its libraries are not the project.
libraries = [Path(e) for e in sys.path if e.endswith(("site-packages", "dist-packages"))]
from_checkout = [
    str(path)
    for path in loaded
    if path.is_relative_to(checkout) and not any(path.is_relative_to(p) for p in libraries)
]
assert not from_checkout, f"imported from the checkout: {from_checkout}"
print("started")
"""


def project_packages() -> list[str]:
    return sorted(
        path.parent.name
        for path in CHECKOUT.glob("*/__init__.py")
        if path.parent.name not in NOT_SHIPPED
    )


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode:
        pytest.fail(f"exit status {done.returncode}:\n{done.stdout}\n{done.stderr}", False)
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    source, target = root / "source", root / "site"
    shutil.copytree(CHECKOUT, source, ignore=COPY_IGNORES)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # No network in tests: no index, no dependencies, the venv's setuptools as backend.
    offline = ["--no-index", "--no-deps", "--no-build-isolation", "--disable-pip-version-check"]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", *offline]
    run([*pip, "--target", str(target), "."], cwd=source, env=env)
    return target


@pytest.fixture
def outside(tmp_path, installed) -> dict[str, str]:
    """Environment of a process that sees the installed copy and the dependencies only."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([str(installed), *site.getsitepackages()]),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "1",
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
    }


@pytest.mark.packaging
def test_the_install_carries_every_package_and_its_files(installed):
    source = installed.parent / "source"
    missing = [
        str(path.relative_to(source))
        for package in project_packages()
        for path in (source / package).rglob("*")
        if path.is_file() and not (installed / path.relative_to(source)).is_file()
    ]
    assert missing == []
    assert not [name for name in NOT_SHIPPED if (installed / name).exists()]


@pytest.mark.packaging
def test_the_installed_project_passes_its_checks_and_serves_the_admin(installed, outside, tmp_path):
    python = [sys.executable, "-S"]
    check = run([*python, "-m", "django", "check"], cwd=tmp_path, env=outside)
    assert "no issues" in check.stdout
    smoke = [*python, "-c", SMOKE, str(installed), str(CHECKOUT), *project_packages()]
    assert run(smoke, cwd=tmp_path, env=outside).stdout.strip() == "started"


# --- In the checkout: the project's admin templates win over the admin's own ------------


def ops_templates() -> list[str]:
    root = CHECKOUT / "ops" / "templates"
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*.html"))


@pytest.mark.parametrize("name", ops_templates())
def test_the_projects_admin_templates_are_the_ones_found(name):
    found = Path(get_template(name).origin.name)
    assert found == Path(apps.get_app_config("ops").path) / "templates" / name


def test_the_admin_index_is_the_projects(client, superuser):
    client.force_login(superuser)
    html = client.get(reverse("admin:index")).content.decode()
    assert 'id="operations-module"' in html
