"""Issue 11, impersonation: the host talks to the service it launched, or to no one.

The red team renamed `kernel.sock` from a cell and listened in its place: the host
sent its bearer token and the next cell's code to agent code and believed the
forged reply. Pointing the socket at another host socket (a symlink) sent the
token there. Here agent code tries each route to every socket it can find; the
host must then either reach the real service (the attack found nothing to take)
or raise a `SandboxError` saying the service was replaced, and in no case return
a forged result or let the token reach the impostor.

The host keeps its connection to the service for the sandbox's life, and a
connection already made cannot be taken over; the attack is on the next
connection (after a dropped one, from `sandbox attach`, from another process).
So each test's next call goes through a new client of the same sandbox, which
must connect to whatever listens there now.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.errors import SandboxError
from cellprompt.sandbox import HttpSandbox
from tests.sandbox.attacks import BACKENDS, FORGED_REPLY, HostListener, run_ok, timed
from tests.sandbox.conftest import open_for

CALL_TIMEOUT_S = 10.0

# Every socket agent code can see whose name ends in .sock (the service's ZeroMQ channels
# to the kernel are the kernel's own business), then `take(path)` on each.
HIJACK = """
import json, os, socket, stat, threading
FORGED = {forged!r}
def sockets():
    found = {{'/run/cellprompt/kernel.sock'}}
    for top in ('/run', '/workspace', '/tmp', '/var', '/opt', '/data', '/home', '/srv'):
        for folder, dirs, files in os.walk(top):
            for name in files + dirs:
                path = os.path.join(folder, name)
                try:
                    if name.endswith('.sock') and stat.S_ISSOCK(os.lstat(path).st_mode):
                        found.add(path)
                except OSError:
                    pass
    return sorted(p for p in found if os.path.lexists(p))
def impostor(path, got):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(3)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b''
        try:
            with open(got, 'ab') as fh:
                fh.write(data or b'<a connection, nothing sent>')
        except OSError:
            pass
        if data:
            conn.sendall(FORGED)
        conn.close()
taken, refused = [], {{}}
for path in sockets():
    try:
        {take}
        taken.append(path)
    except OSError as exc:
        refused[path] = exc.errno
print(json.dumps({{'taken': taken, 'refused': refused}}))
"""

TAKE = {
    "rename": ("os.rename(path, path + '.real'); threading.Thread(target=impostor, args=(path, "
               "os.path.join(os.path.dirname(path), 'got-{marker}')), daemon=True).start()"),
    "unlink": ("os.unlink(path); threading.Thread(target=impostor, args=(path, "
               "os.path.join(os.path.dirname(path), 'got-{marker}')), daemon=True).start()"),
    "symlink": "os.rename(path, path + '.real'); os.symlink({target!r}, path)",
}


@pytest.fixture
def victim(request: pytest.FixtureRequest) -> Iterator[HttpSandbox]:
    """A sandbox of its own: a successful hijack leaves it unusable."""
    with open_for(request.param, memory="512m", cpus=1.0) as sb:
        yield sb


@pytest.fixture
def host_listener() -> Iterator[HostListener]:
    folder = Path(tempfile.mkdtemp(prefix="cp-l-"))  # short: a socket path has 108 bytes
    folder.chmod(0o755)
    listener = HostListener(folder / "host.sock")
    yield listener
    listener.close()
    folder.rmdir()


def _new_client(sb: HttpSandbox) -> HttpSandbox:
    """Another host client of the sandbox: its first call opens a new connection."""
    return HttpSandbox(sb.launched, sb.backend, owned=False)


def _next_cell(sb: HttpSandbox) -> tuple[object, SandboxError | None]:
    """The host's next call after the attack, on a new connection to whatever is there now:
    a result or the SandboxError it raised."""
    with timed(CALL_TIMEOUT_S + 10, "the call after a hijack attempt"), _new_client(sb) as host:
        try:
            return host.execute("raise ValueError('the real kernel ran this')",
                                timeout=CALL_TIMEOUT_S), None
        except SandboxError as exc:
            return None, exc


def _judge(result: object, error: SandboxError | None, taken: list[str]) -> None:
    if result is not None:
        text = result.text()  # type: ignore[attr-defined]
        assert "FORGED" not in text, f"the host accepted a forged result after {taken} was taken"
        assert "the real kernel ran this" in text, text
        assert not taken, f"agent code took over {taken}, yet the host got an answer: {text}"
    else:
        assert error is not None
        assert "replaced" in error.message.lower(), \
            f"a hijack must be reported as the service being replaced, got: {error.message}"


@pytest.mark.parametrize("victim", BACKENDS, indirect=True)
@pytest.mark.parametrize("how", ["rename", "unlink"])
def test_listening_in_place_of_the_service(victim: HttpSandbox, how: str) -> None:
    marker = secrets.token_hex(4)
    code = HIJACK.format(forged=FORGED_REPLY, take=TAKE[how].format(marker=marker))
    attack = json.loads(run_ok(victim, code))
    result, error = _next_cell(victim)
    _judge(result, error, attack["taken"])
    uds = victim.launched.endpoint.uds
    got = uds.parent / f"got-{marker}" if uds is not None else None
    if got is not None and got.exists():  # the impostor's notes, on the host's side
        seen = got.read_bytes()
        assert victim.launched.endpoint.token.encode() not in seen, "the token reached agent code"
        assert b"Authorization" not in seen and b"POST" not in seen, seen[:300]


@pytest.mark.parametrize("victim", BACKENDS, indirect=True)
def test_symlink_to_a_host_socket(victim: HttpSandbox, host_listener: HostListener) -> None:
    """The host resolves a symlink on its own filesystem: the target is a host socket."""
    code = HIJACK.format(forged=FORGED_REPLY,
                         take=TAKE["symlink"].format(target=str(host_listener.path)))
    attack = json.loads(run_ok(victim, code))
    result, error = _next_cell(victim)
    _judge(result, error, attack["taken"])
    assert host_listener.received == b"", \
        f"the host sent {len(host_listener.received)} bytes to another host socket: " \
        f"{host_listener.received[:200]!r}"


@pytest.mark.parametrize("victim", BACKENDS, indirect=True)
def test_every_call_refuses_an_impostor(victim: HttpSandbox, tmp_path: Path) -> None:
    """Not only `execute`: status, files and the workspace export check the peer too."""
    marker = secrets.token_hex(4)
    attack = json.loads(run_ok(victim, HIJACK.format(
        forged=FORGED_REPLY, take=TAKE["rename"].format(marker=marker))))
    if not attack["taken"]:  # nothing agent code could take: every call reaches the service
        with _new_client(victim) as host:
            assert host.status()["status"] == "ok"
        return
    calls = {"status": lambda host: host.status(),
             "read_file": lambda host: host.read_file("x.txt"),
             "export_workspace": lambda host: host.export_workspace(tmp_path / "out", 1 << 20)}
    for name, call in calls.items():
        with timed(CALL_TIMEOUT_S + 10, name), _new_client(victim) as host, \
                pytest.raises(SandboxError, match=r"(?i)replaced"):
            call(host)
