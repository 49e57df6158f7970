"""Listening sockets for several app processes: one ``SO_REUSEPORT`` socket per worker.

uvicorn's ``--workers N`` binds one socket in its parent process and every worker accepts
from it. The first worker to wake takes every waiting connection at once (the event loop
accepts until the queue is empty), so a burst of keep-alive clients, or the few long-lived
connections of a reverse proxy, stays on one process while the other cores idle: with
``scripts/bench_load.py`` (20 annotators, 2 workers) 19 or 20 connections of 20 sat on one
worker in 2 runs of 3, and the run got the throughput of a single process.

On Linux each worker instead listens on a socket of its own, bound to the same address with
``SO_REUSEPORT``: the kernel spreads new connections over the group's sockets by a hash of
each connection's addresses. The parent keeps a bound, not listening, socket of the group
for its whole life: it holds the port (no other program can take it while a worker
restarts) and is handed no connections. Only processes of the same user can join the group.
A worker that uvicorn's supervisor restarts binds its own socket again.

``run_workers(config)`` runs uvicorn's own supervisor (restarts, signals, health pings) this
way; ``per_worker_supported`` says where it applies (Linux, a TCP port other than 0).
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from uvicorn.config import STARTUP_FAILURE  # "failed before serving": no restart

log = logging.getLogger("dataengine.serve")


def per_worker_supported(host: str, port: int) -> bool:
    """True where per-worker sockets balance connections: Linux, a fixed TCP port."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT") and port != 0


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` in the port's ``SO_REUSEPORT`` group.

    ``IPPROTO_TCP`` explicitly: accepted connections inherit it, and the event loop sets
    ``TCP_NODELAY`` only on sockets that say they are TCP."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """The parent's socket: bound in the group, not listening (gets no connections).

    Raises OSError (e.g. EADDRINUSE when another program listens there) before any worker
    starts."""
    return _reuse_port_socket(host, port)


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A worker's own listening socket (called in the worker, see ``PerWorkerListener``).

    A failed bind exits the worker with uvicorn's start-up failure code, so the supervisor
    stops with the error instead of restarting the worker in a loop."""
    try:
        sock = _reuse_port_socket(host, port)
        sock.listen(backlog)
    except OSError as err:
        log.error("worker could not listen on %s:%d: %s", host, port, err)
        sys.exit(STARTUP_FAILURE)
    return sock


class PerWorkerListener:
    """Stands for the listening socket in the list uvicorn's supervisor passes to each worker
    it starts. The list travels to the worker pickled (multiprocessing's spawn); unpickled
    there, this becomes the worker's own socket (``bind_listener``)."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        self.host, self.port, self.backlog = host, port, backlog

    def __reduce__(self) -> tuple[Any, tuple[str, int, int]]:
        return bind_listener, (self.host, self.port, self.backlog)


def run_workers(config: Any) -> None:
    """Run ``config.workers`` app processes under uvicorn's supervisor, each listening on its
    own ``SO_REUSEPORT`` socket (``config``: a ``uvicorn.Config`` whose app is an import
    string). Raises OSError when the port is taken."""
    from uvicorn.supervisors import Multiprocess

    reserved = reserve_port(config.host, config.port)
    try:
        log.info(
            "serving on http://%s:%d: %d worker processes, one SO_REUSEPORT socket each",
            config.host,
            config.port,
            config.workers,
        )
        listener = PerWorkerListener(config.host, config.port, config.backlog)
        Multiprocess(config, sockets=[listener]).run()  # type: ignore[list-item]
    finally:
        reserved.close()
