"""How the host talks to a kernel service: only to the one it launched, never past a deadline.

Two guarantees an ordinary httpx client does not give:

* **The peer is checked on every connection** (Unix sockets): the SO_PEERCRED pid
  of the listening socket must be the `Endpoint.peer_pid` recorded at launch, or
  the connection is dropped before a byte (and so the bearer token) is sent.
  Agent code that renames the socket and listens in its place, or swaps it for a
  symlink to another host socket, gets `SandboxReplacedError`, never a request.
* **A call has one deadline** (`deadline()`), not a per-read timeout: every
  read and write is bounded by the time left, so a service that is stopped,
  wedged, or drips its reply a byte at a time fails the call on time. Replies
  are read up to a byte cap, so a hostile reply cannot fill the host's memory.

httpx has no hook for either, so the transport swaps in an httpcore connection
pool with a network backend of ours (`HTTPTransport._pool` is the one private
attribute we rely on; httpx is pinned to the tested range).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx

from cellprompt.errors import SandboxError
from cellprompt.sandbox.base import Endpoint

_local = threading.local()


class SandboxReplacedError(SandboxError):
    """The socket's listener is not the service this sandbox launched."""


class ReplyTooLargeError(SandboxError):
    """The service sent more than the caller's byte cap."""


def socket_peer_pid(sock: socket.socket) -> int:
    """The pid (in our pid namespace) of the process that listens on the other end."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", raw)
    return int(pid)


def peer_pid(uds: Path, timeout: float = 2.0) -> int:
    """Connect to `uds` once and return its listener's pid (0 when the kernel cannot tell)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(uds))
        return socket_peer_pid(sock)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of this thread's requests inside must end within `seconds`."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def _bounded(timeout: float | None) -> float | None:
    end = getattr(_local, "deadline", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write is bounded by the call's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise SandboxError("sandbox connections never use TLS")

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore.SyncBackend):
    """Connects like httpcore does, then checks who listens before handing the stream out."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        stream = super().connect_unix_socket(path, _bounded(timeout), socket_options)
        expected = self.endpoint.peer_pid
        if expected is not None:
            got = socket_peer_pid(stream.get_extra_info("socket"))
            if got != expected:
                stream.close()
                raise SandboxReplacedError(
                    f"the sandbox service was replaced: {path} is now served by pid {got}, not "
                    f"by the service this sandbox launched (pid {expected}); nothing was sent. "
                    "Treat the sandbox as compromised and open a new one")
        return _DeadlineStream(stream)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(super().connect_tcp(host, port, _bounded(timeout), local_address,
                                                   socket_options))


def http_client(endpoint: Endpoint, timeout: float = 10.0) -> httpx.Client:
    """An httpx client for the endpoint (Unix socket when it has one, else TCP), peer-checked."""
    transport = httpx.HTTPTransport(uds=str(endpoint.uds) if endpoint.uds else None)
    transport._pool = httpcore.ConnectionPool(
        uds=str(endpoint.uds) if endpoint.uds else None, network_backend=_CheckedBackend(endpoint))
    base = "http://sandbox" if endpoint.uds is not None else f"http://{endpoint.host}:{endpoint.port}"
    return httpx.Client(transport=transport, base_url=base, timeout=timeout)


def read_capped(resp: httpx.Response, cap: int) -> bytes:
    """The body of a streamed response, or `ReplyTooLargeError` once it passes `cap` bytes."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_raw():
        size += len(chunk)
        if size > cap:
            resp.close()
            raise ReplyTooLargeError(f"the sandbox's reply passed {cap} bytes; it was dropped")
        chunks.append(chunk)
    return b"".join(chunks)
