"""CI runs every built-in task's validity kit in the real sandbox (issue 12).

For each task: the reference and every valid alternative pass, every wrong and degenerate
solution and the null answer fail, and every generic cheat probe (bundled data, import
cellprompt, filesystem search, row order, cell ids) fails — each in a fresh bwrap sandbox
on the sealed copy, graded on the host, as `cellprompt tasks validate --all` does: the
whole suite is one `validate_all` queue (run once, by the first test that needs it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellprompt.sandbox import open_sandbox
from cellprompt.sandbox.base import Mount
from cellprompt.tasks import (
    ReferenceSolution,
    Task,
    ValidationReport,
    builtin_tasks,
    materialise,
    validate,
    validate_all,
)
from cellprompt.tasks.probes import shared_probes
from cellprompt.tasks.spec import Variant
from tests.conftest import require_sandbox_backend


@pytest.fixture(scope="module")
def backend() -> str:
    require_sandbox_backend("bwrap")
    return "bwrap"


@pytest.fixture(scope="module")
def suite(backend: str, datasets_dir: Path) -> dict[str, tuple[ValidationReport, list[str]]]:
    """The whole suite as `tasks validate --all` runs it: one queue, one pool, 2 at a time."""
    seen: list[str] = []
    reports = validate_all(builtin_tasks(), backend=backend, progress=seen.append, jobs=2)
    return {r.task_id: (r, seen) for r in reports}


@pytest.mark.slow
@pytest.mark.timeout(3000)  # the first one runs the whole suite's queue (`suite`): ~15 min on 2 cores
@pytest.mark.parametrize("task", builtin_tasks(), ids=lambda t: t.id)
def test_builtin_task_validity_kit(task: Task, suite: dict[str, tuple[ValidationReport, list[str]]]
                                   ) -> None:
    report, seen = suite[task.id]
    off = [f"{v.name}: {v.detail}" for v in report.variants if not v.ok]
    assert report.ok and not off, off
    kinds = [v.kind for v in report.variants]
    assert kinds.count("alternative") >= 2 and kinds.count("wrong") >= 2
    assert kinds.count("probe") == 5 and "null" in kinds
    assert report.reference_answer is not None and seen


def test_shared_filesystem_probe_names_the_task_whose_ids_leak(backend: str,
                                                               datasets_dir: Path) -> None:
    """One search over every copy: a file holding one copy's ids is that task's leak only."""
    tasks = [t for t in builtin_tasks() if t.id in ("pbmc68k-qc-mito", "gen-doublets-rate")]
    copies = [materialise(t) for t in tasks]
    search = next(p for p in shared_probes() if p.name == "cheat-filesystem-search")
    mounts = [Mount(mt.agent_dataset, f"{i}.h5ad") for i, mt in enumerate(copies)]
    with open_sandbox(backend=backend, datasets=mounts) as sb:
        plant = ("import anndata as ad\n"
                 "ids = ad.read_h5ad('/data/1.h5ad', backed='r').obs_names\n"
                 "open('/tmp/stolen.txt', 'w').write('x' + '\\n'.join(ids))")
        assert sb.execute(plant).final_status == "ok"
        r = sb.execute(search.cells[0], timeout=300)
    found = json.loads(r.text().strip().splitlines()[-1])
    assert any("/tmp/stolen.txt" in leak for leak in found["_by_file"]["1.h5ad"])
    assert not any("stolen" in leak for leak in found["_by_file"]["0.h5ad"] + found["_leaks"])


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
