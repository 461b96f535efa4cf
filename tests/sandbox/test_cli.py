"""`cellprompt sandbox …` as a user types it: real sandboxes, the real entry point `main()`.

Most calls run `main()` in-process (the CLI's import alone costs seconds on a busy
machine); one runs the installed console script to prove exit codes and output
of a separate process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cellprompt.cli.main import main
from cellprompt.config import reset_settings
from tests.conftest import require_sandbox_backend

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def state_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="cpcli-")  # short: it holds Unix sockets
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def cli(state_dir: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    monkeypatch.setenv("CELLPROMPT_STATE_DIR", state_dir)
    monkeypatch.setenv("COLUMNS", "200")
    reset_settings()

    def run(*args: str, ok: bool = True) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["cellprompt", "sandbox", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        if ok:
            assert code == 0, err
        return code, out, err

    yield run
    reset_settings()


def test_detached_sandbox_lifecycle(cli: Cli, tmp_path: Path) -> None:
    require_sandbox_backend("bwrap")
    sandbox_id = cli("start", "--backend", "bwrap", "--memory", "1g")[1].strip()
    assert sandbox_id.startswith("cp-")
    try:
        assert sandbox_id in cli("status")[1]
        assert cli("exec", sandbox_id, "--code", "x = 41; print('set')")[1] == "set\n"
        script = tmp_path / "cell.py"
        script.write_text("x + 1")
        result = json.loads(cli("exec", sandbox_id, str(script), "--json")[1])
        assert result["final_status"] == "ok"
        assert result["outputs"][0]["data"]["text/plain"] == "42"  # state kept across commands
        assert "serving on" in cli("logs", sandbox_id, "5")[1]
        code, out, err = cli("exec", sandbox_id, "--code", "1/0", ok=False)
        assert code == 1 and "ZeroDivisionError" in out and "status error" in err
    finally:
        cli("stop", sandbox_id)
    assert sandbox_id not in cli("status")[1]


def test_one_shot_exec_and_usage_errors(cli: Cli) -> None:
    require_sandbox_backend("bwrap")
    assert cli("exec", "--backend", "bwrap", "--code", "print(6 * 7)")[1] == "42\n"
    assert "no sandboxes" in cli("status")[1]  # the one-shot sandbox is gone
    code, _, err = cli("stop", ok=False)
    assert code == 2 and "--all" in err
    code, _, err = cli("exec", "nope.py", ok=False)
    assert code == 2 and "neither a running sandbox id nor a file" in err
    code, _, err = cli("exec", "--code", "1", "extra.py", ok=False)
    assert code == 2


def test_stop_all(cli: Cli) -> None:
    require_sandbox_backend("bwrap")
    ids = [cli("start", "--backend", "bwrap", "--memory", "1g")[1].strip() for _ in range(2)]
    assert "stopped 2" in cli("stop", "--all")[1]
    status = cli("status")[1]
    assert all(i not in status for i in ids)


def test_build_bwrap_self_checks(cli: Cli) -> None:
    require_sandbox_backend("bwrap")
    assert "self-check ok" in cli("build", "--backend", "bwrap")[1]


def test_console_script_reports_refusal_in_one_line(state_dir: str) -> None:
    exe = Path(sys.executable).with_name("cellprompt")
    res = subprocess.run([str(exe), "sandbox", "exec", "--backend", "local", "--code", "1"],
                         env={**os.environ, "CELLPROMPT_STATE_DIR": state_dir},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "unsafe" in res.stderr and "Traceback" not in res.stderr


def test_a_dataset_too_big_for_the_memory_limit_is_refused_before_launch(
        cli: Cli, tmp_path: Path) -> None:
    import h5py

    big = tmp_path / "big.h5ad"
    with h5py.File(big, "w") as f:  # a 2e6 x 3e4 float32 X: 224 GB once loaded, a few kB here
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        f.create_dataset("X", shape=(2_000_000, 30_000), dtype="float32")
    for args in (("start", "-d", str(big), "--memory", "1g"),
                 ("exec", "--code", "1", "-d", str(big))):
        code, _, err = cli(*args, ok=False)
        assert code == 1 and "CELLPROMPT_SANDBOX_MEMORY" in err and "Traceback" not in err
    assert "no sandboxes" in cli("status")[1]  # nothing was started
