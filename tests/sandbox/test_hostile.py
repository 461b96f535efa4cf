"""Hostile agent code against the isolating backends: nothing of the host may leak or break.

Each check runs code an attacker (or a confused model) might write and asserts
the sandbox contains it. The module's sandbox is small (512 MiB, 256 tasks, one
CPU) so bombs hit the limits fast and cannot starve the host.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.errors import SandboxDiedError
from cellprompt.sandbox import HttpSandbox, state
from tests.sandbox.conftest import open_for

BACKENDS = ["bwrap", "docker"]
PROJECT = Path(__file__).resolve().parents[2]
FAKE_KEY = "sk-hostile-test-" + uuid.uuid4().hex

pytestmark = pytest.mark.parametrize("hostile", BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def secrets_on_host() -> Iterator[dict[str, Path]]:
    """A secret in the project folder and one in $HOME, written before any sandbox starts."""
    marker = uuid.uuid4().hex
    paths = {"project": PROJECT / f".secret-{marker}.env",
             "home": Path.home() / f".secret-{marker}"}
    for path in paths.values():
        path.write_text(f"SECRET={marker}\n")
    yield paths
    for path in paths.values():
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def hostile(request: pytest.FixtureRequest,
            secrets_on_host: dict[str, Path]) -> Iterator[HttpSandbox]:
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = FAKE_KEY
    try:
        sb = open_for(request.param, memory="512m", cpus=1.0, pids=256)
    finally:
        if old is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = old
    with sb:
        yield sb


def run_ok(sb: HttpSandbox, code: str, timeout: float = 60) -> str:
    r = sb.execute(code, timeout=timeout)
    assert r.final_status == "ok", r.text()
    return r.text()


def test_host_loopback_port_is_unreachable(hostile: HttpSandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        out = run_ok(hostile, f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3)
    print('CONNECTED')
except OSError as exc:
    print('blocked', type(exc).__name__)
""")
    assert out.startswith("blocked"), out


def test_no_network_interface_but_loopback(hostile: HttpSandbox) -> None:
    out = run_ok(hostile, "import socket\nprint(sorted(n for _, n in socket.if_nameindex()))")
    assert out == "['lo']"


def test_dns_lookup_fails(hostile: HttpSandbox) -> None:
    out = run_ok(hostile, """
import socket
try:
    socket.getaddrinfo('example.com', 443)
    print('RESOLVED')
except OSError as exc:
    print('blocked', type(exc).__name__)
""", timeout=30)
    assert out.startswith("blocked"), out


def test_host_secret_files_are_invisible(hostile: HttpSandbox,
                                         secrets_on_host: dict[str, Path]) -> None:
    marker = secrets_on_host["home"].name.removeprefix(".secret-")
    probes = [str(p) for p in secrets_on_host.values()]
    probes += [str(PROJECT / ".env"), str(PROJECT / "src"), str(PROJECT / "pyproject.toml"),
               str(Path.home() / ".bash_history"), str(Path.home() / ".ssh")]
    out = run_ok(hostile, f"""
import os, glob
seen = [p for p in {probes!r} if os.path.lexists(p)]
hits = []
for root in ['/workspace', '/tmp', '/data', '/run', '/opt', '/etc', '/root', '/home', '/work']:
    for path in glob.glob(root + '/**', recursive=True):
        if os.path.isfile(path) and os.path.getsize(path) < 10_000_000:
            try:
                if {marker!r}.encode() in open(path, 'rb').read():
                    hits.append(path)
            except OSError:
                pass
print(seen, hits)
""", timeout=120)
    assert out == "[] []"


def test_host_environment_is_absent(hostile: HttpSandbox) -> None:
    out = run_ok(hostile, f"""
import os, glob
leaks = [k for k, v in os.environ.items() if {FAKE_KEY!r} in v or k == 'OPENAI_API_KEY']
for f in glob.glob('/proc/[0-9]*/environ'):
    try:
        if {FAKE_KEY!r}.encode() in open(f, 'rb').read():
            leaks.append(f)
    except OSError:
        pass
print(leaks, sorted(os.environ))
""")
    leaks, _, names = out.partition("] ")
    assert leaks == "["
    assert "HOME" in names and "OPENAI" not in names and "CELLPROMPT" not in names


def test_writes_outside_workspace_and_tmp_fail(hostile: HttpSandbox) -> None:
    out = run_ok(hostile, """
import os, sys
ok, refused = [], []
for d in ['/', '/usr', '/etc', '/data', '/opt/cellprompt/service', '/run', sys.prefix,
          os.path.dirname(os.__file__), '/workspace', '/tmp']:
    try:
        with open(os.path.join(d, 'pwned.txt'), 'w') as fh:
            fh.write('x')
        ok.append(d)
    except OSError:
        refused.append(d)
print(ok)
""")
    assert out == "['/workspace', '/tmp']"


def test_runs_unprivileged(hostile: HttpSandbox) -> None:
    out = run_ok(hostile, "import os\nprint(os.getuid(), os.geteuid())\n"
                          "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])")
    uid_line, cap = out.splitlines()
    assert uid_line != "0 0"
    assert int(cap, 16) == 0


def test_service_memory_and_token_unreadable(hostile: HttpSandbox) -> None:
    out = run_ok(hostile, """
import os
parent = os.getppid()
try:
    open(f'/proc/{parent}/mem', 'rb').read(1)
    print('READ')
except OSError as exc:
    print('blocked', type(exc).__name__)
print(os.path.exists('/run/cellprompt/token'))
""")
    assert out.splitlines() == [out.splitlines()[0], "False"]
    assert out.startswith("blocked")


def test_timeout_returns_control_quickly(hostile: HttpSandbox) -> None:
    started = time.monotonic()
    r = hostile.execute("while True:\n    pass", timeout=2)
    assert time.monotonic() - started <= 4.0
    assert r.final_status == "timeout"
    assert run_ok(hostile, "print('alive')") == "alive"


def test_forged_kernel_messages_are_ignored(hostile: HttpSandbox) -> None:
    """Messages agent code publishes on IOPub with a key not the kernel's (an early "idle"
    must not end the cell, a stream must not reach the reply), frames that are no message
    at all, and a signed message that is not JSON objects: none may fail the call."""
    r = hostile.execute(
        "from jupyter_client.session import Session\n"
        "k = get_ipython().kernel\n"
        "forger = Session(key=b'not-the-kernel-key', username=k.session.username)\n"
        "forger.send(k.iopub_socket, 'status', {'execution_state': 'idle'},\n"
        "            parent=k.get_parent(), ident=b'kernel.forged.status')\n"
        "forger.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'forged'},\n"
        "            parent=k.get_parent(), ident=b'stream.stdout')\n"
        "k.iopub_socket.send_multipart([b'junk'])\n"
        "k.iopub_socket.send_multipart([b'x', b'<IDS|MSG>', b'sig'])\n"
        "import json\n"
        "parent = json.dumps(k.get_parent()['header'], default=str).encode()\n"
        "frames = [b'{\"msg_type\": \"stream\"}', parent, b'{}', b'[1]']\n"
        "k.iopub_socket.send_multipart([b'x', b'<IDS|MSG>', k.session.sign(frames), *frames])\n"
        "import time\ntime.sleep(0.3)\nprint('after')")
    assert r.final_status == "ok", r.text()
    assert r.outputs == [{"type": "stream", "name": "stdout", "text": "after\n"}]


def test_output_flood_is_capped(hostile: HttpSandbox) -> None:
    started = time.monotonic()
    r = hostile.execute("import sys\nfor _ in range(100):\n"
                        "    sys.stdout.write('0123456789\\n' * 100_000)", timeout=120)
    assert r.final_status == "ok"
    text = r.outputs[0]["text"]
    assert len(text) < 1.1 * 2**20 and "cut from the middle" in text
    assert time.monotonic() - started < 120


def test_print_loop_flood_is_capped_and_bounded(hostile: HttpSandbox) -> None:
    started = time.monotonic()
    r = hostile.execute("for i in range(10**7):\n    print(i)", timeout=8)
    assert time.monotonic() - started <= 8 + 2 + 1
    assert r.final_status in ("ok", "timeout")
    assert sum(len(o.get("text", "")) for o in r.outputs) < 1.1 * 2**20
    assert run_ok(hostile, "print('alive')") == "alive"


def test_memory_bomb_is_contained(hostile: HttpSandbox) -> None:
    hostile.execute("survivor = 1")
    r = hostile.execute("x = b'\\x01' * (2 * 1024**3)", timeout=60)
    assert r.final_status in ("died", "error"), r.text()
    if r.final_status == "died":
        assert r.state_lost and "memory" in (r.message or "")
    else:
        assert r.outputs[-1]["ename"] == "MemoryError"
    assert run_ok(hostile, "print(1 + 1)") == "2"


def test_fork_bomb_is_contained(hostile: HttpSandbox) -> None:
    r = hostile.execute("import os\nwhile True:\n    os.fork()", timeout=5)
    assert r.final_status in ("error", "timeout", "died"), r.text()
    hostile.restart()  # ends every process the bomb left behind
    out = run_ok(hostile, "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))")
    assert int(out) < 10


def test_killing_the_service_is_reported_cleanly(hostile: HttpSandbox) -> None:
    sb = open_for(hostile.backend, memory="512m", cpus=1.0)
    folder = state.sandbox_dir(sb.id)
    started = time.monotonic()
    r = sb.execute("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                   "import time\ntime.sleep(30)", timeout=60)
    assert time.monotonic() - started < 15
    assert r.final_status == "died" and r.state_lost
    assert "stopped" in (r.message or "")
    with pytest.raises(SandboxDiedError):
        sb.execute("1")
    sb.close()
    assert not folder.exists()
