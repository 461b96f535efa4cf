"""`notebook --execute`: nbclient re-runs the trial inside a real bwrap sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellprompt.errors import SandboxUnavailableError
from cellprompt.export.notebook import trial_to_notebook
from cellprompt.export.reproduce import normalise, reproduce
from cellprompt.records.run import ExecutionRecord
from tests.export.run_factory import make_run


@pytest.fixture(scope="module")
def bwrap() -> str:
    from cellprompt.sandbox import get_backend

    try:
        get_backend("bwrap").check()
    except SandboxUnavailableError as exc:
        pytest.skip(f"needs the bwrap sandbox: {exc}")
    return "bwrap"


def test_rerun_reports_each_cell(tmp_path: Path, cells: dict[str, ExecutionRecord], bwrap: str) -> None:
    from cellprompt.sandbox import open_sandbox

    store = make_run(tmp_path / "outputs", cells, scores={("p", "m", "t"): [1.0]}, judge=False)
    record = store.trials()[0]
    record.turns[1].executions[1].outputs[0]["data"]["text/plain"] = "41"  # what was recorded differs now
    nb = trial_to_notebook(record, run_dir=store.path)
    report = reproduce(nb, record.trial_id, lambda: open_sandbox(backend=bwrap), timeout=120)
    assert report.engine == "nbclient" and len(report.cells) == 4
    streams, error, figure, result = report.cells
    assert streams.ran and streams.matched and "hello from stdout" in streams.rerun_text
    assert error.ran and error.matched and error.rerun_error == "ZeroDivisionError: division by zero"
    assert figure.ran and figure.figures == (1, 1)
    assert (
        result.ran and result.matched is False and (result.original_text, result.rerun_text) == ("41", "42")
    )


def test_cli_execute_writes_the_check(tmp_path: Path, cells: dict[str, ExecutionRecord], bwrap: str) -> None:
    store = make_run(tmp_path / "outputs", cells, scores={("p", "m", "t"): [1.0]}, judge=False)
    trial = store.trials()[0].trial_id
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cellprompt.cli.main",
            "notebook",
            str(store.path),
            "--trial",
            trial,
            "--execute",
            "--sandbox",
            bwrap,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "4/4 cells ran, 3 matched" in result.stdout
    assert "dataset of task" in result.stderr  # the task file is gone: re-run without /data, said so
    saved = json.loads((store.path / "notebooks" / f"{trial}.repro.json").read_text())
    assert saved["engine"] == "nbclient" and len(saved["cells"]) == 4


def test_normalise_ignores_colours_and_addresses() -> None:
    assert normalise("\x1b[31m<obj at 0x7f3a2b>\x1b[0m  \n") == normalise("<obj at 0xdeadbeef>")
