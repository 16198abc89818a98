"""gunicorn settings for the routing engine: `gunicorn -c deploy/gunicorn.conf.py config.wsgi`.

Production runs two gunicorns with this file (docs/operations.md): one for the
call path, `gunicorn -c deploy/gunicorn.conf.py config.wsgi_rtjson` (the app on
the command line replaces `wsgi_app` below), and one for the admin and the API,
`nice -n 10 gunicorn -c deploy/gunicorn.conf.py`, each with its own GUNICORN_BIND
and PROMETHEUS_MULTIPROC_DIR.

Every value can be overridden from the environment (GUNICORN_BIND, WEB_CONCURRENCY,
GUNICORN_TIMEOUT) or the command line.

Metrics: each worker is a process with its own counters. With
PROMETHEUS_MULTIPROC_DIR set (an empty directory writable by gunicorn, e.g. a
tmpfs such as /run/routing-metrics), workers write their values there and /metrics
adds them up; this file empties the directory when gunicorn starts and tells
prometheus_client when a worker exits, so a dead worker's gauges stop counting.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# A routing decision takes milliseconds; anything near this is a stuck worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Kamailio keeps HTTP connections open (http_async_client); keep them a little longer.
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
wsgi_app = "config.wsgi:application"


def on_starting(server) -> None:
    """Start from an empty metrics directory: old files would add a dead run's counts."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    """Drop the live gauges of a worker that exited (prometheus_client's recipe)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
