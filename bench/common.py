"""What every benchmark shares: the database, the processes it starts, percentiles, RSS."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/routing_bench"


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)


def server_env(**extra: str) -> dict[str, str]:
    """The environment of every process a benchmark starts (production settings)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "false",
        "ROUTING_TABLE": os.environ.get("ROUTING_TABLE", "compiled"),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def setup_django() -> None:
    os.environ.update(server_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


@contextlib.contextmanager
def started(args: list[str], **extra_env: str) -> Iterator[subprocess.Popen]:
    """A process that is always stopped (SIGTERM, then SIGKILL) when the block ends."""
    process = subprocess.Popen(args, cwd=ROOT, env=server_env(**extra_env))
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (all their threads), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def percentile(sorted_samples: list[float], share: float) -> float:
    if not sorted_samples:
        return float("nan")
    index = min(len(sorted_samples) - 1, int(share * len(sorted_samples)))
    return sorted_samples[index]


def summary(label: str, latencies: list[float], seconds: float) -> str:
    """'label: N decisions in S s = R/s, p50 X ms, p99 Y ms' (latencies in seconds)."""
    ordered = sorted(latencies)
    rate = len(ordered) / seconds if seconds else float("nan")
    return (
        f"{label}: {len(ordered):,} in {seconds:.1f} s = {rate:,.0f}/s, "
        f"p50 {percentile(ordered, 0.50) * 1000:.3f} ms, "
        f"p99 {percentile(ordered, 0.99) * 1000:.3f} ms, "
        f"max {ordered[-1] * 1000 if ordered else float('nan'):.1f} ms"
    )


def machine() -> str:
    """One line about where the figures come from."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError):
        memory = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024**2:.0f} GB RAM"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory}, Python {platform.python_version()}, "
        f"load average {load} at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def run_measured(args: list[str], **extra_env: str) -> tuple[float, float]:
    """Run a command to its end: (seconds, peak RSS in MB). Fails if it fails.

    The peak is the child's own VmHWM, sampled every 0.1 s (getrusage would count
    the RSS this process had when it forked the child).
    """
    started_at = time.monotonic()
    process = subprocess.Popen(args, cwd=ROOT, env=server_env(**extra_env))
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(OSError):
            peak = max(peak, memory_mb(process.pid)[1])
        time.sleep(0.1)
    seconds = time.monotonic() - started_at
    if process.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit code {process.returncode}")
    return seconds, peak


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]
