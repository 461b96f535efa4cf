"""`validate`: run a task's validity kit in real sandboxes and say which variants are off.

A task is a claim that passing means the analysis was done right. It holds only if:
the reference and every valid alternative pass (a valid method that fails means the
truth or tolerance is method-specific); every plausible wrong solution and the null
answer fail (a wrong one that passes means the grader cannot tell); and every generic
cheat probe (`probes.py`) fails (a probe that passes means the truth is reachable
without analysis). Each variant runs in a fresh sandbox on the sealed agent copy, its
workspace is exported and graded on the host exactly as a trial's would be.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cellprompt.errors import CellpromptError
from cellprompt.grading import GradeResult, grade
from cellprompt.llm.reference import last_json_object
from cellprompt.tasks.materialise import MaterialisedTask, materialise
from cellprompt.tasks.probes import probes
from cellprompt.tasks.spec import Task

Progress = Callable[[str], None]
Kind = Literal["reference", "alternative", "wrong", "null", "probe"]
EXPORT_MAX_BYTES = 50 * 1024 * 1024


class VariantResult(BaseModel):
    """One row of the validity table: how a solution scored and whether that was expected."""

    name: str
    kind: Kind
    expect: Literal["pass", "fail"]
    passed: bool  # the solution succeeded: every grader passed (a probe: or it found a leak)
    score: float = 0.0  # mean grader score
    ok: bool  # passed as expected
    detail: str = ""
    leaks: list[str] = Field(default_factory=list)
    grades: list[GradeResult] = Field(default_factory=list)
    answer: dict[str, Any] | None = None
    duration_s: float = 0.0


class ValidationReport(BaseModel):
    schema_version: int = 2
    task_id: str
    ok: bool
    problems: list[str] = Field(default_factory=list)
    variants: list[VariantResult] = Field(default_factory=list)
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


def _export(sb: Any, task: Task, into: Path) -> None:
    """The sandbox's workspace into host folder `into` (the sandbox's safe export)."""
    export = getattr(sb, "export_workspace", None)
    if export is not None:
        export(into, EXPORT_MAX_BYTES)
        return
    wanted = [a.path or a.name for a in task.answer if a.type == "file"]
    for g in task.graders:
        wanted += list((g.get("config") or {}).get("files") or [])
    for rel in dict.fromkeys(wanted):  # no export in this sandbox: fetch the answer files
        try:
            data = sb.read_file(rel)
        except (FileNotFoundError, CellpromptError):
            continue
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def run_cells(task: Task, mt: MaterialisedTask, cells: list[str], backend: str, into: Path,
              ) -> tuple[dict[str, Any] | None, str | None]:
    """Run `cells` in a fresh sandbox on the agent copy; the answer line, or why there is none."""
    from cellprompt.sandbox import open_sandbox

    text = ""
    with open_sandbox(backend=backend, datasets=[mt.mount()]) as sb:
        for i, cell in enumerate(cells, 1):
            r = sb.execute(cell, timeout=task.limits.execution_timeout_s)
            if r.final_status != "ok":
                err = next((o for o in r.outputs if o.get("type") == "error"), None)
                why = f"{err['ename']}: {err['evalue']}" if err else (r.message or r.final_status)
                _export(sb, task, into)
                return None, f"cell {i} ended {r.final_status}: {why}"[:300]
            text = r.text()
        _export(sb, task, into)
    answer = last_json_object(text)  # the same rule the `reference` model plays by
    if answer is None:
        return None, "the last cell did not print the answer as a JSON object line"
    return answer, None


def _verdict(name: str, kind: Kind, expect: Literal["pass", "fail"], grades: list[GradeResult],
             answer: dict[str, Any] | None, problem: str | None, leaks: list[str],
             started: float) -> VariantResult:
    passed = bool(grades) and all(g.passed for g in grades)
    if kind == "probe":
        passed = passed or bool(leaks)
    score = sum(g.score for g in grades) / len(grades) if grades else 0.0
    if kind == "probe" and problem:  # a probe that did not finish proves nothing
        return VariantResult(name=name, kind=kind, expect=expect, passed=False, ok=False,
                             detail=f"the probe did not run to the end: {problem}",
                             grades=grades, duration_s=round(time.monotonic() - started, 2))
    if leaks:
        detail = "leak: " + "; ".join(leaks[:3])
    elif problem and kind in ("reference", "alternative"):
        detail = problem
    else:
        failing = next((g for g in grades if not g.passed), None)
        first = (failing.reasoning.splitlines() or [""])[0] if failing else ""
        detail = (f"{failing.grader}: {first}" if failing else "all graders pass")[:300]
        if problem and not passed:
            detail = f"{problem}; {detail}"[:300]
    return VariantResult(name=name, kind=kind, expect=expect, passed=passed, score=round(score, 4),
                         ok=passed == (expect == "pass"), detail=detail, leaks=leaks,
                         grades=grades, answer=answer,
                         duration_s=round(time.monotonic() - started, 2))


def _run_variant(task: Task, mt: MaterialisedTask, backend: str, tmp: Path, name: str,
                 kind: Kind, expect: Literal["pass", "fail"], cells: list[str] | None
                 ) -> VariantResult:
    started = time.monotonic()
    ws = tmp / name
    ws.mkdir()
    answer: dict[str, Any] | None = None
    problem: str | None = None
    leaks: list[str] = []
    try:
        if cells is not None:
            answer, problem = run_cells(task, mt, cells, backend, ws)
        if answer is not None:
            leaks = [str(x) for x in answer.pop("_leaks", []) or []]
            answer.pop("_scanned", None)
        grades = grade_task(task, answer, truth=mt.truth, workspace=ws, mt=mt, backend=backend)
    except CellpromptError as exc:
        return VariantResult(name=name, kind=kind, expect=expect, passed=False, ok=False,
                             detail=f"could not run: {exc.message}",
                             duration_s=round(time.monotonic() - started, 2))
    return _verdict(name, kind, expect, grades, answer, problem, leaks, started)


def kit(task: Task, *, with_probes: bool = True
        ) -> list[tuple[str, Kind, Literal["pass", "fail"], list[str] | None]]:
    """Every solution `validate` runs: reference, the task's variants, null, the probes."""
    plan: list[tuple[str, Kind, Literal["pass", "fail"], list[str] | None]] = []
    if task.reference is not None:
        plan.append(("reference", "reference", "pass", task.reference.cells))
    for v in task.variants:
        plan.append((v.name, "alternative" if v.expect == "pass" else "wrong", v.expect, v.cells))
    plan.append(("null", "null", "fail", None))
    if with_probes:
        plan += [(p.name, "probe", "fail", p.cells) for p in probes(task)]
    return plan


def validate(task: Task, *, backend: str = "auto", datasets_dir: Path | None = None,
             progress: Progress | None = None, jobs: int = 2, with_probes: bool = True
             ) -> ValidationReport:
    """Run the task's validity kit (sandboxes in parallel, `jobs` at a time); report what is off."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    if task.kind == "open":
        return ValidationReport(task_id=task.id, ok=True,
                                problems=["an open task is judged, not graded: nothing to run"])
    if task.reference is None:
        return ValidationReport(task_id=task.id, ok=False,
                                problems=["the task has no reference solution"])
    say(f"{task.id}: sealing {task.dataset}")
    mt = materialise(task, datasets_dir=datasets_dir)
    plan = kit(task, with_probes=with_probes)
    done: list[VariantResult] = []
    with tempfile.TemporaryDirectory(prefix="cellprompt-validate-") as tmp:
        def one(item: tuple[str, Kind, Literal["pass", "fail"], list[str] | None]
                ) -> VariantResult:
            result = _run_variant(task, mt, backend, Path(tmp), *item)
            done.append(result)
            say(f"{task.id}: {len(done)}/{len(plan)} ({result.name})")
            return result

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, plan))
    problems = [f"{r.name} ({r.kind}) {'fails' if r.expect == 'pass' else 'passes'}: {r.detail}"
                for r in results if not r.ok]
    ref = next((r for r in results if r.kind == "reference"), None)
    null = next((r for r in results if r.kind == "null"), None)
    return ValidationReport(task_id=task.id, ok=not problems, problems=problems, variants=results,
                            reference_answer=ref.answer if ref else None,
                            reference_grades=ref.grades if ref else [],
                            null_grades=null.grades if null else [],
                            duration_s=round(time.monotonic() - started, 2))
