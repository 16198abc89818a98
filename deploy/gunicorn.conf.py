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

A hung database: a sync worker blocked in a database read cannot answer, so the
rtjson view interrupts database waits at ROUTING_DECISION_DEADLINE_MS (SIGALRM in
the worker's main thread, see routing.deadline.database_deadline) and /healthz at
0.5 s; the compiled table reads the database only from its own thread. Each worker
loads its compiled table (and blocklists) before taking requests (up to WARM_UP_SECONDS, then it
keeps loading in the background), so its first calls are answered from memory.
GUNICORN_TIMEOUT stays the last resort for a worker stuck anywhere else.
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# A routing decision takes milliseconds; anything near this is a stuck worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Kamailio keeps HTTP connections open (http_async_client); keep them a little longer.
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
wsgi_app = "config.wsgi:application"

# How long a new worker may spend loading its compiled route table before serving.
# Below `timeout`: the worker does not heartbeat until it serves.
WARM_UP_SECONDS = min(5.0, timeout / 3)


def on_starting(server) -> None:
    """Start from an empty metrics directory: old files would add a dead run's counts."""
    from routing.metrics import empty_multiprocess_dir

    empty_multiprocess_dir()


def post_worker_init(worker) -> None:
    """Load the compiled route table, rates and blocklists now, not on the first calls."""
    from routing.service import warm_up

    for name in warm_up(WARM_UP_SECONDS, freeze=True):
        worker.log.warning(
            "%s not loaded after %.0f s; the database answers until it is", name, WARM_UP_SECONDS
        )


def child_exit(server, worker) -> None:
    """Drop the live gauges of a worker that exited (prometheus_client's recipe)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
