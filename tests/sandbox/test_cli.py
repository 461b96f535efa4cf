"""`cellprompt sandbox …` end to end, as a user types it (separate processes, real sandboxes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_sandbox_backend

CLI = [sys.executable, "-m", "cellprompt.cli.main"]


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    state_dir = tempfile.mkdtemp(prefix="cpcli-")  # short: it holds Unix sockets
    yield {**os.environ, "CELLPROMPT_STATE_DIR": state_dir, "COLUMNS": "200"}
    shutil.rmtree(state_dir, ignore_errors=True)


def cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*CLI, "sandbox", *args], env=env, capture_output=True, text=True,
                         timeout=300)
    if ok:
        assert res.returncode == 0, res.stderr
    return res


def test_detached_sandbox_lifecycle(env: dict[str, str], tmp_path: Path) -> None:
    require_sandbox_backend("bwrap")
    sandbox_id = cli(env, "start", "--backend", "bwrap", "--memory", "1g").stdout.strip()
    assert sandbox_id.startswith("cp-")
    try:
        assert sandbox_id in cli(env, "status").stdout
        assert cli(env, "exec", sandbox_id, "--code", "x = 41; print('set')").stdout == "set\n"
        script = tmp_path / "cell.py"
        script.write_text("x + 1")
        result = json.loads(cli(env, "exec", sandbox_id, str(script), "--json").stdout)
        assert result["final_status"] == "ok"
        assert result["outputs"][0]["data"]["text/plain"] == "42"  # state kept across commands
        assert "serving on" in cli(env, "logs", sandbox_id, "5").stdout
        failed = cli(env, "exec", sandbox_id, "--code", "1/0", ok=False)
        assert failed.returncode == 1 and "ZeroDivisionError" in failed.stdout
        assert "Traceback" not in failed.stderr
    finally:
        cli(env, "stop", sandbox_id)
    assert sandbox_id not in cli(env, "status").stdout


def test_one_shot_exec_and_user_errors(env: dict[str, str]) -> None:
    require_sandbox_backend("bwrap")
    res = cli(env, "exec", "--backend", "bwrap", "--code", "print(6 * 7)")
    assert res.stdout == "42\n"
    assert "no sandboxes" in cli(env, "status").stdout  # the one-shot sandbox is gone
    refused = cli(env, "exec", "--backend", "local", "--code", "1", ok=False)
    assert refused.returncode != 0 and "unsafe" in refused.stderr
    assert "Traceback" not in refused.stderr
    both = cli(env, "stop", ok=False)
    assert both.returncode == 2 and "--all" in both.stderr
    missing = cli(env, "exec", "nope.py", ok=False)
    assert missing.returncode == 2 and "neither a running sandbox id nor a file" in missing.stderr


def test_stop_all(env: dict[str, str]) -> None:
    require_sandbox_backend("bwrap")
    ids = [cli(env, "start", "--backend", "bwrap", "--memory", "1g").stdout.strip()
           for _ in range(2)]
    assert "stopped 2" in cli(env, "stop", "--all").stdout
    status = cli(env, "status").stdout
    assert all(i not in status for i in ids)


def test_build_bwrap_self_checks(env: dict[str, str]) -> None:
    require_sandbox_backend("bwrap")
    res = cli(env, "build", "--backend", "bwrap")
    assert "bwrap runtime ready" in res.stdout and "self-check ok" in res.stdout
