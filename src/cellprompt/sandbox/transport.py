"""How the host talks to a kernel service: only to the one it launched, never past a deadline.

Two guarantees an ordinary HTTP client does not give:

* **The peer is checked on every connection** (Unix sockets): the SO_PEERCRED pid
  of the listening socket must be the `Endpoint.peer_pid` recorded at launch, or
  the connection is dropped before a byte (and so the bearer token) is sent.
  Agent code that renames the socket and listens in its place, or swaps it for a
  symlink to another host socket, gets `SandboxReplacedError`, never a request.
* **A call has one deadline**, not a per-read timeout: every read and write is
  bounded by the time left, so a service that is stopped, wedged, or drips its
  reply a byte at a time fails the call on time. Replies are read up to a byte
  cap, so a hostile reply cannot fill the host's memory.

HTTP/1.1 itself is h11's (sans-I/O): the sockets are ours, so both checks sit
where the bytes move. An HTTP client library on top cost the host more CPU per
cell (httpx about 4.5 times, httpcore about twice) for models, pools and hooks
this one service never needs.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import h11

from cellprompt.errors import SandboxError
from cellprompt.sandbox.base import Endpoint

MAX_HEADER_BYTES = 100 << 10  # the archive's skipped-files header is the largest (~25 KB)


class SandboxReplacedError(SandboxError):
    """The socket's listener is not the service this sandbox launched."""


class ReplyTooLargeError(SandboxError):
    """The service sent more than the caller's byte cap."""


class TransportError(SandboxError):
    """The service could not be reached, or did not answer in time or in HTTP."""


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


@dataclass(frozen=True)
class Reply:
    """One answer of the service: its status, headers (names lower-cased) and capped body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Connection:
    """One keep-alive connection: a socket whose every operation ends by a deadline."""

    def __init__(self, endpoint: Endpoint, end: float) -> None:
        if endpoint.uds is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = str(endpoint.uds)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (endpoint.host or "127.0.0.1", int(endpoint.port or 0))
        try:
            self.sock.settimeout(_left(end))
            self.sock.connect(address)
            if endpoint.uds is not None and endpoint.peer_pid is not None:
                got = socket_peer_pid(self.sock)
                if got != endpoint.peer_pid:
                    raise SandboxReplacedError(
                        f"the sandbox service was replaced: {endpoint.uds} is now served by "
                        f"pid {got}, not by the service this sandbox launched (pid "
                        f"{endpoint.peer_pid}); nothing was sent. Treat the sandbox as "
                        "compromised and open a new one")
        except BaseException:
            self.sock.close()
            raise
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)

    def reusable(self) -> bool:
        """Idle, and not closed by the service meanwhile (readable now means EOF or junk)."""
        if self.http.our_state is not h11.IDLE or self.http.their_state is not h11.IDLE:
            return False
        return not select.select([self.sock], [], [], 0)[0]

    def send(self, data: bytes, end: float) -> None:
        self.sock.settimeout(_left(end))
        self.sock.sendall(data)

    def next_event(self, end: float) -> object:
        """The next h11 event of the reply, reading from the socket as long as it needs."""
        while (event := self.http.next_event()) is h11.NEED_DATA:
            self.sock.settimeout(_left(end))
            self.http.receive_data(self.sock.recv(1 << 16))
        return event

    def close(self) -> None:
        self.sock.close()


def _left(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("the call's deadline passed")
    return left


class ServiceClient:
    """HTTP/1.1 to one sandbox service over peer-checked, deadline-bound connections.

    Thread-safe: a call takes an idle connection or opens one (an interrupt can go
    out while another thread waits on a cell), and puts it back when the exchange
    ended cleanly; any error closes it.
    """

    def __init__(self, endpoint: Endpoint, token: str | None = None) -> None:
        self._endpoint = endpoint
        self._headers = [("Host", "sandbox")]
        if token is not None:
            self._headers.append(("Authorization", f"Bearer {token}"))
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, timeout: float, cap: int = 1 << 20,
                content: bytes | None = None, content_type: str | None = None) -> Reply:
        """One call under one deadline, its body read up to `cap` bytes (else
        `ReplyTooLargeError`); `TransportError` when the service does not answer."""
        end = time.monotonic() + timeout
        headers = [*self._headers, ("Content-Length", str(len(content or b"")))]
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        conn: _Connection | None = None
        try:
            conn = self._take(end)
            http = conn.http
            conn.send(http.send(h11.Request(method=method, target=path, headers=headers))
                      + http.send(h11.Data(data=content or b"")) + http.send(h11.EndOfMessage()),
                      end)
            reply = self._read(conn, end, cap)
        except (OSError, h11.ProtocolError) as exc:
            if conn is not None:
                conn.close()
            raise TransportError(f"{method} {path.split('?')[0]}: {type(exc).__name__}: "
                                 f"{exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._give_back(conn)
        return reply

    @staticmethod
    def _read(conn: _Connection, end: float, cap: int) -> Reply:
        response: h11.Response | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event(end)
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > cap:
                    raise ReplyTooLargeError(f"the sandbox's reply passed {cap} bytes; it was "
                                             "dropped")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the service closed the connection mid-reply")
        assert response is not None  # h11 gives a Response before any Data or end
        names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        return Reply(response.status_code, names, b"".join(chunks))

    def _take(self, end: float) -> _Connection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.reusable():
                    return conn
                conn.close()
        return _Connection(self._endpoint, end)

    def _give_back(self, conn: _Connection) -> None:
        if conn.http.our_state is h11.DONE and conn.http.their_state is h11.DONE:
            conn.http.start_next_cycle()
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
