"""`validate`: a task is sound when its reference passes every grader and a null answer fails.

Both halves matter: a reference that fails means wrong truth or tolerances; a
null answer that passes means a grader that cannot tell work from no work.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cellprompt.errors import CellpromptError
from cellprompt.grading import GradeResult, grade
from cellprompt.llm.reference import last_json_object
from cellprompt.tasks.materialise import MaterialisedTask, materialise
from cellprompt.tasks.spec import Task

Progress = Callable[[str], None]


class ValidationReport(BaseModel):
    schema_version: int = 1
    task_id: str
    ok: bool
    problems: list[str] = Field(default_factory=list)
    reference_answer: dict[str, Any] | None = None
    reference_grades: list[GradeResult] = Field(default_factory=list)
    null_grades: list[GradeResult] = Field(default_factory=list)
    duration_s: float = 0.0


def grade_task(task: Task, answer: dict[str, Any] | None, *, truth: dict[str, Any],
               workspace: Path | None, mt: MaterialisedTask | None = None,
               backend: str = "auto") -> list[GradeResult]:
    """Every grader of `task` on one answer (plus the files in `workspace`)."""
    datasets = [mt.mount()] if mt is not None else []
    return [grade(g, answer, truth, workspace=workspace, datasets=datasets, backend=backend)
            for g in task.graders]


def _run_reference(task: Task, mt: MaterialisedTask, backend: str, into: Path,
                   say: Progress) -> tuple[dict[str, Any] | None, list[str]]:
    from cellprompt.sandbox import open_sandbox

    assert task.reference is not None
    problems: list[str] = []
    text = ""
    with open_sandbox(backend=backend, datasets=[mt.mount()]) as sb:
        cells = task.reference.cells
        for i, cell in enumerate(cells, 1):
            say(f"{task.id}: reference cell {i}/{len(cells)}")
            r = sb.execute(cell, timeout=task.limits.execution_timeout_s)
            if r.final_status != "ok":
                err = next((o for o in r.outputs if o.get("type") == "error"), None)
                why = f"{err['ename']}: {err['evalue']}" if err else (r.message or r.final_status)
                problems.append(f"reference cell {i} ended {r.final_status}: {why}")
                break
            text = r.text()
        shutil.copytree(sb.workspace, into, dirs_exist_ok=True, symlinks=True)
    if problems:
        return None, problems
    answer = last_json_object(text)  # the same rule the `reference` model plays by
    if answer is None:
        problems.append("the reference's last cell did not print the answer as a JSON object line")
    return answer, problems


def validate(task: Task, *, backend: str = "auto", datasets_dir: Path | None = None,
             progress: Progress | None = None) -> ValidationReport:
    """Run the reference in a sandbox, grade it and a null answer; report what is broken."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    problems: list[str] = []
    if task.reference is None:
        return ValidationReport(task_id=task.id, ok=False,
                                problems=["the task has no reference solution"])
    say(f"{task.id}: materialising {task.dataset}")
    mt = materialise(task, datasets_dir=datasets_dir)
    with tempfile.TemporaryDirectory(prefix="cellprompt-validate-") as tmp:
        ref_ws, null_ws = Path(tmp) / "reference", Path(tmp) / "null"
        ref_ws.mkdir()
        null_ws.mkdir()
        answer, problems = _run_reference(task, mt, backend, ref_ws, say)
        say(f"{task.id}: grading")
        ref_grades: list[GradeResult] = []
        null_grades: list[GradeResult] = []
        try:
            if not problems:
                ref_grades = grade_task(task, answer, truth=mt.truth, workspace=ref_ws, mt=mt,
                                        backend=backend)
            null_grades = grade_task(task, None, truth=mt.truth, workspace=null_ws, mt=mt,
                                     backend=backend)
        except CellpromptError as exc:
            problems.append(f"grading failed: {exc.message}")
    for g in ref_grades:
        if not g.passed:
            first = g.reasoning.splitlines()[0] if g.reasoning else ""
            problems.append(f"reference fails {g.grader}: {first}")
    for g in null_grades:
        if g.passed:
            problems.append(f"a null answer passes {g.grader}: the grader cannot tell work from none")
    return ValidationReport(task_id=task.id, ok=not problems, problems=problems,
                            reference_answer=answer, reference_grades=ref_grades,
                            null_grades=null_grades,
                            duration_s=round(time.monotonic() - started, 2))
