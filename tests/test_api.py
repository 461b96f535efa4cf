"""The public Python API: its names are pinned, it is cheap to import, and it runs a benchmark
end to end the way the CLI does (the CLI calls the same functions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cellprompt
from cellprompt.errors import CellpromptError
from tests.conftest import require_sandbox_backend

API = {"evaluate", "evolve_prompt", "grade", "load_task", "plan", "report", "resume_evolution", "run",
       "start_run"}


def test_the_exported_names_are_pinned() -> None:
    assert set(cellprompt.__all__) == API | {"__version__"}
    for name in API:
        assert callable(getattr(cellprompt, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        cellprompt.nosuch  # noqa: B018


def test_importing_the_package_does_not_import_every_layer() -> None:
    """The sandbox and dataset tools import `cellprompt`; the API comes on first use only."""
    code = ("import sys, cellprompt; print('cellprompt.api' in sys.modules, "
            "'cellprompt.evolve' in sys.modules); cellprompt.plan; print('cellprompt.api' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["False", "False", "True"]


def test_plan_expands_all_to_the_builtin_suite() -> None:
    from cellprompt.tasks import builtin_tasks

    suite = [t.id for t in builtin_tasks()]
    specs = cellprompt.plan(["all"], models=["reference"])
    assert [s.task_id for s in specs] == suite
    assert {s.prompt_id for s in specs} == {"baseline"}


def test_a_bad_task_reference_is_an_error_naming_it() -> None:
    with pytest.raises(CellpromptError, match="no-such-task"):
        cellprompt.load_task("no-such-task")


def test_run_grade_and_report_from_python(tmp_path: Path) -> None:
    require_sandbox_backend("bwrap")
    task = "pbmc68k-qc-mito"
    seen: list[str] = []
    store = cellprompt.run([task], models=["reference"], sandbox="bwrap", out=tmp_path,
                           on_trial=lambda record, progress: seen.append(record.trial_id))
    [record] = store.trials()
    assert seen == [record.trial_id] and record.passed, record.error
    assert store.manifest().config["executor"]["name"] == "local"
    # the reference's answer passes the task's graders; a plausible wrong one does not
    assert all(g.passed for g in cellprompt.grade(task, record.answer))
    wrong = {**(record.answer or {}), "n_cells_high_mito": 0}
    assert not all(g.passed for g in cellprompt.grade(cellprompt.load_task(task), wrong))
    page = cellprompt.report([store.run_id], tmp_path / "report.html", out=tmp_path)
    assert task in page.read_text(encoding="utf-8")
