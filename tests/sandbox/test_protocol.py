"""The `Sandbox` protocol, as every implementation keeps it: the real backends and the
library's in-memory `ScriptedSandbox` (what tests of agent loops and runners use when the
kernel itself is not what they test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.errors import SandboxDiedError, SandboxError
from cellprompt.sandbox import ExecutionResult, Sandbox, ScriptedSandbox
from tests.sandbox.conftest import open_for

IMPLEMENTATIONS = ["scripted", "local", "bwrap", "docker"]


def _open(kind: str) -> Sandbox:
    if kind == "scripted":
        return ScriptedSandbox(lambda code: "printed\n" if "print" in code else "")
    return open_for(kind, memory="1g")


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with _open(request.param) as sb:
        yield sb


def test_is_a_sandbox(sandbox: Sandbox) -> None:
    assert isinstance(sandbox, Sandbox)
    assert sandbox.id and sandbox.backend in IMPLEMENTATIONS


def test_results_count_and_round_trip(sandbox: Sandbox) -> None:
    first, second = sandbox.execute("x = 1"), sandbox.execute("print('printed')")
    assert first.final_status == second.final_status == "ok"
    assert second.execution_count == first.execution_count + 1  # type: ignore[operator]
    assert second.text().strip() == "printed" and second.duration_s > 0
    assert ExecutionResult.model_validate_json(second.model_dump_json()) == second


def test_files_in_and_out(sandbox: Sandbox) -> None:
    sandbox.write_file("proto/a.txt", b"alpha")
    assert sandbox.read_file("proto/a.txt") == b"alpha"
    assert sandbox.read_file("/workspace/proto/a.txt") == b"alpha"
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("proto/missing.txt")


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "/workspacex/y"])
def test_paths_cannot_leave_the_workspace(sandbox: Sandbox, path: str) -> None:
    with pytest.raises(SandboxError):
        sandbox.read_file(path)
    with pytest.raises(SandboxError):
        sandbox.write_file(path, b"x")


def test_export_keeps_within_the_cap_and_lists_the_rest(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.write_file("export/small.txt", b"s" * 10)
    sandbox.write_file("export/big.bin", b"b" * 50_000)
    skipped = sandbox.export_workspace(tmp_path / "ws", 20_000)
    assert (tmp_path / "ws" / "export" / "small.txt").read_bytes() == b"s" * 10
    assert not (tmp_path / "ws" / "export" / "big.bin").exists()
    assert any("big.bin" in s for s in skipped)


def test_a_closed_sandbox_refuses_work() -> None:
    sb = ScriptedSandbox()
    with sb:
        assert sb.execute("1").final_status == "ok"
    with pytest.raises(SandboxDiedError):
        sb.execute("1")


def test_scripted_results_and_history() -> None:
    error = ExecutionResult(final_status="error", outputs=[
        {"type": "error", "ename": "ValueError", "evalue": "no", "traceback": []}])
    sb = ScriptedSandbox(lambda code: error if "raise" in code else f"ran {len(code)}")
    assert sb.execute("raise").final_status == "error"
    assert sb.execute("abc").text() == "ran 3"
    assert sb.executed == ["raise", "abc"]
