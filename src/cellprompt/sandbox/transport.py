"""How the host talks to a kernel service: only to the one it launched, never past a deadline.

Two guarantees an ordinary HTTP client does not give:

* **The peer is checked on every connection** (Unix sockets): the SO_PEERCRED pid
  of the listening socket must be the `Endpoint.peer_pid` recorded at launch, or
  the connection is dropped before a byte (and so the bearer token) is sent.
  Agent code that renames the socket and listens in its place, or swaps it for a
  symlink to another host socket, gets `SandboxReplacedError`, never a request.
* **A call has one deadline** (`deadline()`), not a per-read timeout: every
  read and write is bounded by the time left, so a service that is stopped,
  wedged, or drips its reply a byte at a time fails the call on time. Replies
  are read up to a byte cap, so a hostile reply cannot fill the host's memory.

Both live in an httpcore network backend of ours, under httpcore's connection
pool and HTTP/1.1 framing (`ServiceClient`).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore

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


class TransportError(SandboxError):
    """The service could not be reached, or did not answer in time or in HTTP."""


_HTTPCORE_ERRORS = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
                    httpcore.ConnectionNotAvailable, httpcore.UnsupportedProtocol)


@dataclass(frozen=True)
class Reply:
    """One answer of the service: its status, headers (names lower-cased) and capped body."""

    status: int
    headers: dict[str, str]
    body: bytes


class ServiceClient:
    """HTTP/1.1 to one sandbox service: a peer-checked, deadline-bound httpcore pool.

    httpcore rather than httpx: the host makes one request per cell, and httpx's request
    and response models cost as much CPU as the service's whole reply to `1+1`; the
    connection pool, the HTTP framing and the network backend hook are httpcore's.
    """

    def __init__(self, endpoint: Endpoint, token: str | None = None) -> None:
        self._pool = httpcore.ConnectionPool(
            uds=str(endpoint.uds) if endpoint.uds else None,
            network_backend=_CheckedBackend(endpoint))
        self._base = ("http://sandbox" if endpoint.uds is not None
                      else f"http://{endpoint.host}:{endpoint.port}")
        self._headers = [(b"Host", b"sandbox")]
        if token is not None:
            self._headers.append((b"Authorization", f"Bearer {token}".encode()))

    def request(self, method: str, path: str, *, timeout: float, cap: int = 1 << 20,
                content: bytes | None = None, content_type: str | None = None) -> Reply:
        """One call under one deadline, its body read up to `cap` bytes (else
        `ReplyTooLargeError`); `TransportError` when the service does not answer."""
        headers = list(self._headers)
        if content_type is not None:
            headers.append((b"Content-Type", content_type.encode()))
        limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        try:
            with deadline(timeout), self._pool.stream(
                    method, self._base + path, headers=headers, content=content,
                    extensions={"timeout": limits}) as resp:
                body = read_capped(resp.iter_stream(), cap)
        except _HTTPCORE_ERRORS as exc:
            raise TransportError(f"{method} {path.split('?')[0]}: {type(exc).__name__}: "
                                 f"{exc}") from exc
        names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in resp.headers}
        return Reply(resp.status, names, body)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_capped(chunks_in: Iterable[bytes], cap: int) -> bytes:
    """A streamed body, or `ReplyTooLargeError` once it passes `cap` bytes (the rest unread)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in chunks_in:
        size += len(chunk)
        if size > cap:
            raise ReplyTooLargeError(f"the sandbox's reply passed {cap} bytes; it was dropped")
        chunks.append(chunk)
    return b"".join(chunks)
