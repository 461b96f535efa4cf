"""The conformance suite every sandbox backend passes (Inspect AI's `self_check`, as tests).

One sandbox per backend serves the whole module; tests that kill or restart the
kernel only rely on state they set up themselves.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time

import pytest

from cellprompt.errors import SandboxDiedError, SandboxError
from cellprompt.sandbox import ExecutionResult, HttpSandbox, Sandbox, state
from cellprompt.sandbox.transport import ServiceClient

BACKENDS = ["local", "bwrap", "docker"]

pytestmark = pytest.mark.parametrize("module_sandbox", BACKENDS, indirect=True, scope="module")


def test_is_a_sandbox(module_sandbox: HttpSandbox) -> None:
    assert isinstance(module_sandbox, Sandbox)
    assert module_sandbox.backend in BACKENDS


def test_state_persists_across_calls(module_sandbox: HttpSandbox) -> None:
    first = module_sandbox.execute("conf_x = 20 + 1")
    second = module_sandbox.execute("conf_x * 2")
    assert first.final_status == "ok" and second.final_status == "ok"
    assert second.outputs == [{"type": "execute_result", "data": {"text/plain": "42"},
                               "metadata": {}}]
    assert second.execution_count == first.execution_count + 1  # type: ignore[operator]


def test_streams_in_order(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute("import sys\nprint('a'); print('b')\nsys.stderr.write('c\\n');")
    assert r.final_status == "ok"
    assert r.outputs[0] == {"type": "stream", "name": "stdout", "text": "a\nb\n"}
    assert r.outputs[1]["name"] == "stderr" and r.outputs[1]["text"] == "c\n"
    assert r.text() == "a\nb\nc"


def test_matplotlib_figure_comes_back_as_png(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute(
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()",
        timeout=120)
    assert r.final_status == "ok", r.text()
    images = r.images()
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert r.outputs[-1]["type"] == "display_data"


def test_error_carries_traceback(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute("def f():\n    return 1 / 0\nf()")
    assert r.final_status == "error"
    err = next(o for o in r.outputs if o["type"] == "error")
    assert err["ename"] == "ZeroDivisionError"
    assert "division by zero" in err["evalue"]
    assert any("f()" in line for line in err["traceback"])
    assert module_sandbox.execute("1").final_status == "ok"  # an error does not stick


def test_timeout_interrupts_and_keeps_state(module_sandbox: HttpSandbox) -> None:
    module_sandbox.execute("kept = 'still here'")
    started = time.monotonic()
    r = module_sandbox.execute("import time\nprint('before', flush=True)\ntime.sleep(30)",
                               timeout=1.5)
    assert time.monotonic() - started < 1.5 + 2
    assert r.final_status == "timeout"
    assert "before" in r.text() and "timeout" in (r.message or "")
    assert not r.state_lost
    after = module_sandbox.execute("print(kept)")
    assert after.outputs == [{"type": "stream", "name": "stdout", "text": "still here\n"}]


def test_uninterruptible_cell_gets_a_restart(module_sandbox: HttpSandbox) -> None:
    module_sandbox.execute("lost = 1")
    started = time.monotonic()
    r = module_sandbox.execute("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)"
                               "\nwhile True:\n    time.sleep(0.05)", timeout=1)
    assert time.monotonic() - started < 1 + 3
    assert r.final_status == "timeout" and r.state_lost
    assert "restarted" in (r.message or "")
    after = module_sandbox.execute("'lost' in globals()")
    assert after.outputs[0]["data"]["text/plain"] == "False"


def test_no_output_leaks_into_the_next_reply(module_sandbox: HttpSandbox) -> None:
    module_sandbox.execute("import time\nfor i in range(100):\n    print('old', i, flush=True)"
                           "\n    time.sleep(0.05)", timeout=1)
    r = module_sandbox.execute("print('new')")
    assert r.outputs == [{"type": "stream", "name": "stdout", "text": "new\n"}]


def test_interrupt_from_another_thread(module_sandbox: HttpSandbox) -> None:
    timer = threading.Timer(1.0, module_sandbox.interrupt)
    timer.start()
    started = time.monotonic()
    r = module_sandbox.execute("import time\ntime.sleep(60)", timeout=60)
    timer.join()
    assert time.monotonic() - started < 20
    assert r.final_status == "error"
    assert r.outputs[-1]["ename"] == "KeyboardInterrupt"


def test_kernel_death_restarts_and_says_state_lost(module_sandbox: HttpSandbox) -> None:
    module_sandbox.execute("doomed = 1")
    r = module_sandbox.execute("import os\nos._exit(7)")
    assert r.final_status == "died"
    assert r.state_lost and "exited with code 7" in (r.message or "")
    again = module_sandbox.execute("'doomed' in globals()")
    assert again.final_status == "ok"
    assert again.outputs[0]["data"]["text/plain"] == "False"


def test_segfault_is_reported_as_death(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute("import ctypes\nctypes.string_at(0)")
    assert r.final_status == "died"
    assert "SIGSEGV" in (r.message or "")
    assert module_sandbox.execute("2 + 2").outputs[0]["data"]["text/plain"] == "4"


def test_restart_loses_state(module_sandbox: HttpSandbox) -> None:
    module_sandbox.execute("gone = 1")
    module_sandbox.restart()
    r = module_sandbox.execute("gone")
    assert r.final_status == "error" and r.outputs[0]["ename"] == "NameError"


def test_output_is_capped_in_the_middle(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute("print('HEAD' + 'x' * 3_000_000 + 'TAIL')", timeout=120)
    assert r.final_status == "ok"
    text = r.outputs[0]["text"]
    assert len(text) < 1.1 * 2**20
    assert text.startswith("HEAD") and text.rstrip().endswith("TAIL")
    assert "characters cut from the middle" in text


def test_rich_output_is_capped(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute("from IPython.display import display, HTML\n"
                               "display(HTML('<p>' + 'y' * 3_000_000 + '</p>'))", timeout=120)
    html = r.outputs[0]["data"]["text/html"]
    assert len(html) < 1.1 * 2**20 and "cut from the middle" in html


def test_concurrent_executes_are_serialised(module_sandbox: HttpSandbox) -> None:
    code = "import time\n_t0 = time.time(); time.sleep(0.4); print(_t0, time.time())"
    spans: list[tuple[float, float]] = []

    def run() -> None:
        r = module_sandbox.execute(code)
        start, end = map(float, r.outputs[0]["text"].split())
        spans.append((start, end))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 3
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_auth_is_required(module_sandbox: HttpSandbox) -> None:
    endpoint = module_sandbox.launched.endpoint
    body = b'{"code": "1"}'
    with ServiceClient(endpoint) as raw:
        assert raw.request("GET", "/status", timeout=10).status == 200
        assert raw.request("POST", "/execute", timeout=10, content=body).status == 401
    with ServiceClient(endpoint, "not-the-token") as bad:
        for method, url in [("POST", "/execute"), ("POST", "/interrupt"), ("POST", "/restart"),
                            ("GET", "/files/x"), ("PUT", "/files/x")]:
            assert bad.request(method, url, timeout=10).status == 401, url
    with ServiceClient(endpoint, endpoint.token) as good:
        assert good.request("POST", "/execute", timeout=10, content=body).status == 200


def test_malformed_execute_bodies_are_refused_with_the_reason(module_sandbox: HttpSandbox) -> None:
    endpoint = module_sandbox.launched.endpoint
    with ServiceClient(endpoint, endpoint.token) as raw:
        for body in (b"not json", b"[1]", b'{"code": 1}', b'{"code": "1", "timeout": "x"}',
                     b'{"code": "1", "timeout": true}'):
            resp = raw.request("POST", "/execute", timeout=10, content=body,
                               content_type="application/json")
            assert resp.status == 422, body
            assert json.loads(resp.body)["detail"]
        assert raw.request("GET", "/archive?max_bytes=lots", timeout=10).status == 422
    assert module_sandbox.execute("print(6 * 7)").outputs[0]["text"] == "42\n"


def test_token_is_not_visible_to_agent_code(module_sandbox: HttpSandbox) -> None:
    token = module_sandbox.launched.endpoint.token
    code = ("import os, glob\nhits = []\n"
            "for f in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):\n"
            "    try:\n        data = open(f, 'rb').read()\n    except OSError:\n        continue\n"
            f"    if {token!r}.encode() in data:\n        hits.append(f)\n"
            f"print(sorted(hits), {token!r} in str(dict(os.environ)))")
    r = module_sandbox.execute(code)
    assert r.outputs[0]["text"].strip() == "[] False"


def test_files_in_and_out_of_the_workspace(module_sandbox: HttpSandbox) -> None:
    module_sandbox.write_file("sub/in.txt", b"from host")
    r = module_sandbox.execute("print(open('sub/in.txt').read())\n"
                               "open('out.bin', 'wb').write(bytes(range(256)))")
    assert r.outputs[0]["text"] == "from host\n"
    assert module_sandbox.read_file("out.bin") == bytes(range(256))
    assert module_sandbox.read_file("/workspace/out.bin") == bytes(range(256))
    with pytest.raises(FileNotFoundError):
        module_sandbox.read_file("missing.txt")


def test_file_paths_cannot_leave_the_workspace(module_sandbox: HttpSandbox) -> None:
    module_sandbox.execute("import os\nos.symlink('/etc', 'escape')\n"
                           "os.symlink('/etc/hostname', 'escape_file')")
    for path in ["../x", "a/../../x", "escape/hostname", "escape_file", "escape/passwd"]:
        with pytest.raises(SandboxError):
            module_sandbox.read_file(path)
    with pytest.raises(SandboxError):
        module_sandbox.write_file("escape/new.txt", b"x")
    endpoint = module_sandbox.launched.endpoint
    with ServiceClient(endpoint, endpoint.token) as raw:
        resp = raw.request("GET", "/files/%2E%2E/%2E%2E/etc/hostname", timeout=10)
        assert resp.status in (400, 404)


def test_the_kernel_keeps_its_history_in_memory_only(module_sandbox: HttpSandbox) -> None:
    """No history file is written per cell (the sandbox is thrown away), yet `In` and
    %history still show the session's cells."""
    module_sandbox.execute("x = 41")
    r = module_sandbox.execute(
        "import pathlib\nip = get_ipython()\n"
        "print(In[-2], ip.history_manager.enabled,\n"
        "      list(pathlib.Path(ip.profile_dir.location).glob('history.sqlite*')))")
    assert r.outputs[0]["text"] == "x = 41 False []\n"
    assert "x = 41" in module_sandbox.execute("%history").text()


def test_result_schema(module_sandbox: HttpSandbox) -> None:
    r = module_sandbox.execute("print('x')")
    assert isinstance(r, ExecutionResult)
    assert r.duration_s > 0 and r.execution_count is not None
    assert ExecutionResult.model_validate_json(r.model_dump_json()) == r


def test_status_reports_ready_kernel(module_sandbox: HttpSandbox) -> None:
    status = module_sandbox.status()
    assert status["status"] == "ok" and status["kernel"] == "ready"
    assert "token" not in str(status)


def test_close_removes_everything(module_sandbox: HttpSandbox) -> None:
    from tests.sandbox.conftest import open_for

    sb = open_for(module_sandbox.backend, memory="1g")
    folder = state.sandbox_dir(sb.id)
    assert folder.exists() and sb.execute("1").final_status == "ok"
    sb.close()
    assert not folder.exists()
    assert not sb.launched.alive()
    with pytest.raises(SandboxDiedError):
        sb.execute("1")
