"""What the escape tests share: attacker code run through `execute`, and host-side witnesses.

The attacks are run exactly as agent code would run them, as cells; the witnesses
(a host listener, a scan of the host's process table) look from the host's side,
because an attack that "fails" inside but changes the host is what matters.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from cellprompt.sandbox import HttpSandbox

BACKENDS = ["bwrap", "docker"]
# How a denied syscall may fail under a seccomp filter (Docker's and ours: EPERM or ENOSYS).
DENIED = {"EPERM", "ENOSYS"}

FORGED_BODY = (b'{"outputs":[{"type":"stream","name":"stdout","text":"FORGED"}],'
               b'"final_status":"ok","execution_count":1,"duration_s":0.0}')
FORGED_REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(FORGED_BODY)).encode() + b"\r\n\r\n" + FORGED_BODY)

# Finds the kernel service from inside (walking up from the kernel): `svc_pid()`.
FIND_SERVICE = """
import os
def svc_pid():
    pid = os.getpid()
    while pid > 1:
        with open(f'/proc/{pid}/stat') as fh:
            pid = int(fh.read().rsplit(')', 1)[1].split()[1])
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
        except OSError:
            continue
        if b'service' in cmd and b'-m' in cmd:
            return pid
    raise RuntimeError('no service above the kernel')
"""


def run_ok(sb: HttpSandbox, code: str, timeout: float = 60) -> str:
    """The cell's text, asserting it ran without error."""
    r = sb.execute(code, timeout=timeout)
    assert r.final_status == "ok", r.text()
    return r.text()


@contextlib.contextmanager
def timed(limit: float, what: str) -> Iterator[None]:
    """Fail when the block takes longer than `limit` seconds (it is still allowed to finish)."""
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    assert took <= limit, f"{what} took {took:.1f} s, more than {limit:.0f} s"


class HostListener:
    """A Unix socket on the host that records every byte anyone sends it.

    It answers a request with a forged `/execute` reply, so a client that both sent
    its request and trusted the answer is caught twice.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = b""
        self.connections = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o777)  # anyone may connect: the host client is who we want to catch
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="host-listener")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2.0)
                with contextlib.suppress(OSError):
                    data = conn.recv(65536)
                    self.received += data
                    if data:
                        conn.sendall(FORGED_REPLY)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def sandbox_processes(marker: str) -> list[psutil.Process]:
    """Every host process in the pid namespace of the process whose cmdline is `sleep marker`.

    Only processes we may inspect are seen: as root that is all of them.
    """
    anchor = next((p for p in psutil.process_iter(["cmdline"])
                   if p.info["cmdline"] == ["sleep", marker]), None)
    assert anchor is not None, f"the sandbox's marker process `sleep {marker}` is not on the host"
    ns = os.readlink(f"/proc/{anchor.pid}/ns/pid")
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{proc.pid}/ns/pid") == ns:
                found.append(proc)
    return found


def status_fields(pid: int) -> dict[str, str]:
    """`/proc/<pid>/status` as a dict (Uid, Gid, CapEff, ...)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out
