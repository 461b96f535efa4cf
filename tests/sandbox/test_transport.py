"""The host's side of the sandbox boundary, against real sockets: who listens, how long, how much.

Each server here is a real Unix socket served by a thread of this process, so
SO_PEERCRED names this process; an `Endpoint` pinned to another pid plays the
sandbox whose socket was taken over by agent code.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cellprompt.sandbox import state
from cellprompt.sandbox.base import Endpoint
from cellprompt.sandbox.transport import (
    ReplyTooLargeError,
    SandboxReplacedError,
    ServiceClient,
    TransportError,
    peer_pid,
)

Handler = Callable[[socket.socket], None]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Handler], tuple[Path, list[bytes]]]]:
    """Start a Unix socket server running `handler` per connection; record what it received."""
    servers: list[socket.socket] = []

    def start(handler: Handler) -> tuple[Path, list[bytes]]:
        path = tmp_path / f"s{len(servers)}.sock"
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        srv.listen(8)
        servers.append(srv)
        received: list[bytes] = []

        def loop() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(1.0)
                    try:
                        received.append(conn.recv(65536))
                        handler(conn)
                    except OSError:
                        pass

        threading.Thread(target=loop, daemon=True).start()
        return path, received

    yield start
    for srv in servers:
        srv.close()


def _ok(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")


def test_the_pinned_listener_is_accepted(serve) -> None:  # type: ignore[no-untyped-def]
    path, _ = serve(_ok)
    assert peer_pid(path) == os.getpid()
    with ServiceClient(Endpoint(token="t", uds=path, peer_pid=os.getpid())) as client:
        assert client.request("GET", "/status", timeout=5).status == 200


def test_a_connection_the_service_closed_is_replaced_and_checked_again(serve) -> None:  # type: ignore[no-untyped-def]
    """Each connection of this server answers once and closes, as a service does after its
    keep-alive time: the next call must open (and peer-check) a new one, not fail."""
    path, received = serve(_ok)
    with ServiceClient(Endpoint(token="t", uds=path, peer_pid=os.getpid())) as client:
        for _ in range(3):
            assert client.request("GET", "/status", timeout=5).status == 200
            time.sleep(0.1)  # the server's close lands
    assert len(received) == 3


def test_another_listener_gets_nothing_not_even_the_token(serve) -> None:  # type: ignore[no-untyped-def]
    path, received = serve(_ok)
    endpoint = Endpoint(token="secret-token", uds=path, peer_pid=os.getpid() + 1)
    with ServiceClient(endpoint, "secret-token") as client, \
            pytest.raises(SandboxReplacedError, match="replaced"):
        client.request("GET", "/status", timeout=5)
    time.sleep(0.2)
    assert all(b"secret-token" not in chunk for chunk in received)
    assert received in ([], [b""])


def test_a_symlink_to_another_socket_is_refused(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, received = serve(_ok)
    link = tmp_path / "kernel.sock"
    link.symlink_to(path)
    with ServiceClient(Endpoint(token="t", uds=link, peer_pid=1)) as client, \
            pytest.raises(SandboxReplacedError):
        client.request("GET", "/status", timeout=5)
    assert not any(received)


def _drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(100):
        conn.sendall(b"x")
        time.sleep(0.3)


def test_a_slow_drip_fails_the_call_at_its_deadline(serve) -> None:  # type: ignore[no-untyped-def]
    path, _ = serve(_drip)
    t0 = time.monotonic()
    with ServiceClient(Endpoint(token="t", uds=path, peer_pid=os.getpid())) as client, \
            pytest.raises(TransportError, match="Timeout"):
        client.request("GET", "/status", timeout=1.5)
    assert time.monotonic() - t0 < 3.0  # each read was short, yet the call as a whole stopped


def test_a_reply_over_the_cap_is_dropped(serve) -> None:  # type: ignore[no-untyped-def]
    body = b"y" * (3 << 20)

    def big(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    path, _ = serve(big)
    with ServiceClient(Endpoint(token="t", uds=path, peer_pid=os.getpid())) as client:
        with pytest.raises(ReplyTooLargeError):
            client.request("GET", "/x", timeout=5, cap=1 << 20)
        assert client.request("GET", "/x", timeout=5, cap=4 << 20).body == body


def test_a_launch_in_progress_is_never_stale_while_its_launcher_lives() -> None:
    rec = state.SandboxRecord(sandbox_id="cp-0000000000", backend="bwrap")  # pid not known yet
    assert rec.pid is None and not state.is_stale(rec)
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    rec.launcher_pid, rec.launcher_started = gone.pid, None
    assert state.is_stale(rec)
    # a reused pid: alive, but not the process that launched it
    rec.launcher_pid, rec.launcher_started = os.getpid(), 12.0
    assert state.is_stale(rec)
