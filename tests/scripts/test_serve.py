"""`dataengine serve`: the Prometheus multiprocess folder for several worker processes, and
how those processes share one port (real `dataengine serve` on loopback)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from scripts.bench_common import free_port, serve_workers, serving, start_serve
from scripts.commands.serve import prepare_multiprocess_metrics
from tests.webapp import settings_for

HOST = "127.0.0.1"


def test_multiprocess_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so that monkeypatch restores the original (absent) value afterwards,
    # also undoing what prepare_multiprocess_metrics writes into os.environ
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    settings = settings_for("sqlite://", tmp_path / "var")
    assert prepare_multiprocess_metrics(settings, 1) is None  # one process: in memory
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ

    stale = tmp_path / "var" / "prometheus" / "counter_123.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old run")
    folder = prepare_multiprocess_metrics(settings, 3)
    assert folder == stale.parent.resolve() and not stale.exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)

    mine = tmp_path / "ops-owned"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(mine))
    assert prepare_multiprocess_metrics(settings, 3) == mine  # the operator's folder, untouched


def test_environment_is_restored() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # runs after the test above


def test_default_workers_is_one_per_usable_core() -> None:
    from scripts.commands.serve import default_workers

    assert default_workers() == len(os.sched_getaffinity(0)) >= 1


# --- several workers on one port: real `dataengine serve` processes on loopback ---------------

CONNECTIONS = 20


def _serve(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    return start_serve(url, tmp_path / "var", port, *extra, log=tmp_path / "serve.log")


def _spread(proc: subprocess.Popen[bytes], port: int) -> list[int]:
    """Established connections per worker process while ``CONNECTIONS`` keep-alive clients
    (async httpx in one event loop, as the load bench runs them) each make a few requests."""

    async def run() -> list[int]:
        clients = [httpx.AsyncClient(base_url=f"http://{HOST}:{port}") for _ in range(CONNECTIONS)]

        async def work(client: httpx.AsyncClient) -> None:
            for _ in range(5):
                (await client.get("/livez")).raise_for_status()

        try:
            await asyncio.gather(*(work(c) for c in clients))
            counts = []
            for worker in serve_workers(proc.pid):
                conns = worker.net_connections(kind="tcp")
                counts.append(
                    sum(c.status == "ESTABLISHED" and c.laddr.port == port for c in conns)
                )
            return counts
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(run())


def _listening(proc: subprocess.Popen[bytes], port: int) -> int:
    """Worker processes with a listening socket of their own on ``port``."""
    found = 0
    for worker in serve_workers(proc.pid):
        conns = worker.net_connections(kind="tcp")
        found += any(c.status == "LISTEN" and c.laddr.port == port for c in conns)
    return found


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 150.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT is Linux's")
def test_workers_share_a_burst_of_keep_alive_connections(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port, "--workers", "2")
    with serving(
        proc, f"http://{HOST}:{port}", ready_path="/readyz", start_timeout_s=150,
        stop_timeout_s=20, poll_s=0.25,
    ):  # fmt: skip
        _wait(lambda: len(serve_workers(proc.pid)) == 2, "two workers")
        counts = _spread(proc, port)
        # one socket shared by the workers (--listen shared): 19 or 20 of the 20 on one
        # worker; a socket each: spread by the kernel (all on one: probability 2**-19)
        assert sum(counts) == CONNECTIONS and min(counts) >= 1, counts

        # a worker that dies is replaced, and the new one listens on a socket of its own
        victim = serve_workers(proc.pid)[0]
        victim.kill()
        _wait(
            lambda: (
                victim.pid not in {w.pid for w in serve_workers(proc.pid)}
                and len(serve_workers(proc.pid)) == 2
            ),
            "the dead worker's replacement",
        )
        _wait(lambda: _listening(proc, port) == 2, "the replacement's own listening socket")

        counts = _spread(proc, port)
        assert sum(counts) == CONNECTIONS and min(counts) >= 1, counts


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT is Linux's")
def test_a_port_taken_by_another_program_stops_serve_with_the_reason(tmp_path: Path) -> None:
    other = socket.socket()
    other.bind((HOST, 0))
    other.listen()
    port = other.getsockname()[1]
    try:
        proc = _serve(tmp_path, port, "--workers", "2")
        proc.wait(timeout=120)
    finally:
        other.close()
    assert proc.returncode == 1
    assert f"cannot listen on {HOST}:{port}" in (tmp_path / "serve.log").read_text()


def test_listen_mode_is_checked(tmp_path: Path) -> None:
    proc = _serve(tmp_path, free_port(), "--listen", "round-robin")
    proc.wait(timeout=120)
    assert proc.returncode == 2
    assert "--listen must be one of per-worker, shared" in (tmp_path / "serve.log").read_text()
