"""Every built-in task validates: its reference passes in a real sandbox and a null answer fails.

This runs each reference solution in the bwrap sandbox (one fresh sandbox per task, as CI's
`cellprompt tasks validate --all` does); the datasets folder and agent copies are shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.tasks import ReferenceSolution, Task, builtin_tasks, validate
from tests.conftest import require_sandbox_backend


@pytest.fixture(scope="module")
def backend() -> str:
    require_sandbox_backend("bwrap")
    return "bwrap"


@pytest.mark.slow
@pytest.mark.parametrize("task", builtin_tasks(), ids=lambda t: t.id)
def test_builtin_task_validates(task: Task, backend: str, datasets_dir: Path) -> None:
    seen: list[str] = []
    report = validate(task, backend=backend, progress=seen.append)
    assert report.ok, report.problems
    assert report.reference_grades and all(g.passed for g in report.reference_grades)
    assert report.null_grades and not any(g.passed for g in report.null_grades)
    assert report.reference_answer is not None
    assert any("reference cell" in m for m in seen)


def test_broken_task_is_reported(backend: str, datasets_dir: Path, tmp_path: Path) -> None:
    qc = next(t for t in builtin_tasks() if t.id == "pbmc68k-qc-mito")
    wrong = qc.model_copy(update={"graders": [
        {"type": "numeric_tolerance", "config": {"ground_truth": {"n_cells_high_mito": 0},
                                                 "tolerance": 0}}]})
    report = validate(wrong, backend=backend)
    assert not report.ok and any("reference fails numeric_tolerance" in p for p in report.problems)
    crash = qc.model_copy(update={"reference": ReferenceSolution(cells=["raise ValueError('boom')"])})
    report = validate(crash, backend=backend)
    assert not report.ok and "ValueError: boom" in report.problems[0]


def test_grader_that_passes_a_null_answer_is_reported(backend: str, datasets_dir: Path) -> None:
    qc = next(t for t in builtin_tasks() if t.id == "pbmc68k-qc-mito")
    lax = qc.model_copy(update={"graders": [{"type": "python_check",
                                             "config": {"code": "assert True"}}]})
    report = validate(lax, backend=backend)
    assert not report.ok
    assert report.problems == ["a null answer passes python_check: the grader cannot tell work "
                               "from none"]
