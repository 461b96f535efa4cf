"""Judge, notebook, re-run and report over a real run: the `reference` model in a bwrap sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from cellprompt.errors import SandboxUnavailableError
from cellprompt.export.notebook import trial_to_notebook
from cellprompt.export.report import build_report
from cellprompt.export.reproduce import reproduce, trial_mounts
from cellprompt.grading.judge import DEFAULT_CRITERIA
from cellprompt.runs.evaluate import evaluate_run
from cellprompt.runs.store import RunStore

TASK = "pbmc68k-leiden-clustering"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    from cellprompt.runs.runner import create_run, plan_trials, run
    from cellprompt.sandbox import get_backend

    try:
        get_backend("bwrap").check()
    except SandboxUnavailableError as exc:
        pytest.skip(f"needs the bwrap sandbox: {exc}")
    specs = plan_trials(
        prompts={"careful": "You are a careful analyst."},
        tasks=[TASK],
        models=["reference"],
        sandbox_backend="bwrap",
    )
    store = create_run(tmp_path_factory.mktemp("outputs"), specs)
    run(specs, store, parallel=1)
    return store


def test_reference_run_judged_exported_and_reproduced(real_run: RunStore, tmp_path: Path) -> None:
    (record,) = real_run.trials()
    assert record.status == "submitted" and record.passed, record.error

    verdict = {
        "criteria": [{"name": n, "score": 9, "comment": "ok"} for n in DEFAULT_CRITERIA],
        "grade": 91,
        "comments": "Textbook clustering.",
    }
    judge = tmp_path / "judge.yaml"
    judge.write_text(
        yaml.safe_dump(
            {"tools": False, "when_exhausted": "repeat_last", "replies": [{"text": json.dumps(verdict)}]}
        )
    )
    summary = evaluate_run(real_run, f"replay:{judge}")
    assert summary.judged == 1 and real_run.evaluations()[record.trial_id].grade_mean == 91

    nb = trial_to_notebook(record, real_run.evaluations()[record.trial_id], run_dir=real_run.path)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == len(record.code_cells) and all(c.execution_count for c in code)

    page = build_report([real_run], tmp_path / "report.html").read_text()
    assert "Textbook clustering." in page and TASK in page

    from cellprompt.sandbox import open_sandbox

    mounts, notes = trial_mounts(record)
    assert mounts and notes == []
    check = reproduce(nb, record.trial_id, lambda: open_sandbox(backend="bwrap", datasets=mounts))
    assert check.engine == "nbclient" and all(c.ran for c in check.cells)
