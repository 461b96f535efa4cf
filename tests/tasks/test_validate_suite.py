"""CI runs every built-in task's validity kit in the real sandbox (issue 12).

For each task: the reference and every valid alternative pass, every wrong and degenerate
solution and the null answer fail, and every generic cheat probe (bundled data, import
cellprompt, filesystem search, row order, cell ids) fails — each in a fresh bwrap sandbox
on the sealed copy, graded on the host, as `cellprompt tasks validate --all` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.tasks import ReferenceSolution, Task, builtin_tasks, validate
from cellprompt.tasks.spec import Variant
from tests.conftest import require_sandbox_backend


@pytest.fixture(scope="module")
def backend() -> str:
    require_sandbox_backend("bwrap")
    return "bwrap"


@pytest.mark.slow
@pytest.mark.parametrize("task", builtin_tasks(), ids=lambda t: t.id)
def test_builtin_task_validity_kit(task: Task, backend: str, datasets_dir: Path) -> None:
    seen: list[str] = []
    report = validate(task, backend=backend, progress=seen.append, jobs=3)
    off = [f"{v.name}: {v.detail}" for v in report.variants if not v.ok]
    assert report.ok and not off, off
    kinds = [v.kind for v in report.variants]
    assert kinds.count("alternative") >= 2 and kinds.count("wrong") >= 2
    assert kinds.count("probe") == 5 and "null" in kinds
    assert report.reference_answer is not None and seen


def test_broken_tasks_are_reported(backend: str, datasets_dir: Path) -> None:
    qc = next(t for t in builtin_tasks() if t.id == "pbmc68k-qc-mito")
    wrong = qc.model_copy(update={"graders": [
        {"type": "numeric_tolerance", "config": {"ground_truth": {"n_cells_high_mito": 0},
                                                 "tolerance": 0}}], "variants": []})
    report = validate(wrong, backend=backend, with_probes=False)
    ref = next(v for v in report.variants if v.kind == "reference")
    assert not report.ok and not ref.ok and ref.expect == "pass"
    assert any(p.startswith("reference (reference) fails") for p in report.problems)
    crash = qc.model_copy(update={"reference": ReferenceSolution(cells=["raise ValueError('boom')"]),
                                  "variants": []})
    report = validate(crash, backend=backend, with_probes=False)
    assert not report.ok and "ValueError: boom" in report.problems[0]


def test_lax_grader_and_passing_wrong_variant_are_reported(backend: str,
                                                           datasets_dir: Path) -> None:
    qc = next(t for t in builtin_tasks() if t.id == "pbmc68k-qc-mito")
    lazy = Variant(name="lazy", expect="fail", why="prints the right answer format, no work",
                   cells=['import json; print(json.dumps({"n_cells_high_mito": 0}))'])
    lax = qc.model_copy(update={"graders": [{"type": "multiple_choice",
                                             "config": {"correct_answer": "x",
                                                        "answer_field": "zzz"}}],
                                "variants": [lazy]})
    report = validate(lax, backend=backend, with_probes=False)
    assert not report.ok  # the reference fails this grader
    always = qc.model_copy(update={"graders": [{"type": "python_check",
                                                "config": {"code": "assert True"}}],
                                   "variants": [lazy]})
    report = validate(always, backend=backend, with_probes=False)
    off = {v.name for v in report.variants if not v.ok}
    assert off == {"lazy", "null"}
