"""annotator_ui/listeners.py: per-worker SO_REUSEPORT sockets, with real sockets on loopback."""

from __future__ import annotations

import pickle
import select
import socket
import sys

import pytest
from uvicorn.config import STARTUP_FAILURE

from annotator_ui import listeners
from scripts.bench_common import free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's"
)
HOST = "127.0.0.1"


def accepted(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's queue (accepted and closed here)."""
    sock.setblocking(False)
    count = 0
    while select.select([sock], [], [], 0.2)[0]:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            break
        conn.close()
        count += 1
    return count


def test_where_it_applies() -> None:
    assert listeners.per_worker_supported(HOST, 8000)
    assert not listeners.per_worker_supported(HOST, 0)  # each bind would get its own port


def test_the_kernel_spreads_connections_over_the_workers_sockets() -> None:
    port = free_port()
    reserved = listeners.reserve_port(HOST, port)
    first = listeners.bind_listener(HOST, port, 128)
    second = listeners.bind_listener(HOST, port, 128)
    clients = [socket.create_connection((HOST, port), timeout=5) for _ in range(40)]
    try:
        counts = [accepted(first), accepted(second)]
        # every connection reached a worker's socket, and each socket got a share (all 40
        # on one: probability 2**-39); the parent's socket holds the port without listening
        assert sum(counts) == 40 and min(counts) >= 1, counts
        assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
    finally:
        for sock in [*clients, first, second, reserved]:
            sock.close()


def test_the_listener_becomes_a_socket_in_the_worker() -> None:
    port = free_port()
    reserved = listeners.reserve_port(HOST, port)
    # what uvicorn's supervisor sends each worker it starts: unpickled there, a new socket
    sock = pickle.loads(pickle.dumps(listeners.PerWorkerListener(HOST, port, 64)))
    try:
        assert isinstance(sock, socket.socket)
        assert sock.getsockname() == (HOST, port)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.proto == socket.IPPROTO_TCP  # so accepted connections get TCP_NODELAY
    finally:
        sock.close()
        reserved.close()


def test_a_port_taken_by_another_program_is_refused() -> None:
    other = socket.socket()  # a plain listener, not in any SO_REUSEPORT group
    other.bind((HOST, 0))
    other.listen()
    port = other.getsockname()[1]
    try:
        with pytest.raises(OSError):
            listeners.reserve_port(HOST, port)
        # in a worker: exit with uvicorn's start-up failure code (no restart loop)
        with pytest.raises(SystemExit) as exited:
            listeners.bind_listener(HOST, port, 64)
        assert exited.value.code == STARTUP_FAILURE
    finally:
        other.close()
