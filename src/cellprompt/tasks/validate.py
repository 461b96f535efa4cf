"""`validate`: run a task's validity kit in real sandboxes and say which variants are off.

A task is a claim that passing means the analysis was done right. It holds only if:
the reference and every valid alternative pass (a valid method that fails means the
truth or tolerance is method-specific); every plausible wrong solution and the null
answer fail (a wrong one that passes means the grader cannot tell); and every generic
cheat probe (`probes.py`) fails (a probe that passes means the truth is reachable
without analysis). Each variant runs in a fresh sandbox on the sealed agent copy, its
workspace is exported and graded on the host exactly as a trial's would be.

A whole suite runs as one queue (`validate_all`): every task's variants in one planned
`SandboxPool`, so sandboxes start while others run and no task waits for the slowest
variant of the one before it; the probes of the runtime (`probes.SHARED`) run once for
all tasks with every copy mounted, and each task's row is read off that one run.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cellprompt.errors import CellpromptError
from cellprompt.grading import GradeResult, grade
from cellprompt.llm.reference import last_json_object
from cellprompt.sandbox.base import Mount
from cellprompt.tasks.materialise import MaterialisedTask, materialise
from cellprompt.tasks.probes import SHARED, shared_probes, task_probes
from cellprompt.tasks.spec import Task

Progress = Callable[[str], None]
Kind = Literal["reference", "alternative", "wrong", "null", "probe"]
EXPORT_MAX_BYTES = 50 * 1024 * 1024
SHARED_TIMEOUT_S = 300.0  # a runtime probe (the filesystem search stops itself at 120 s)


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
    # duration_s: the sandbox seconds of the task's own variants (tasks share one queue)
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


def run_cells(task: Task, sb: Any, cells: list[str], into: Path, timeout: float | None = None,
              ) -> tuple[dict[str, Any] | None, str | None]:
    """Run `cells` in sandbox `sb` (fresh, on the agent copy); the answer line, or why none."""
    text = ""
    for i, cell in enumerate(cells, 1):
        r = sb.execute(cell, timeout=timeout or task.limits.execution_timeout_s)
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
             duration: float) -> VariantResult:
    passed = bool(grades) and all(g.passed for g in grades)
    if kind == "probe":
        passed = passed or bool(leaks)
    score = sum(g.score for g in grades) / len(grades) if grades else 0.0
    duration = round(duration, 2)
    if kind == "probe" and problem:  # a probe that did not finish proves nothing
        return VariantResult(name=name, kind=kind, expect=expect, passed=False, ok=False,
                             detail=f"the probe did not run to the end: {problem}",
                             grades=grades, duration_s=duration)
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
                         grades=grades, answer=answer, duration_s=duration)


KitItem = tuple[str, Kind, Literal["pass", "fail"], list[str] | None]


def kit(task: Task, *, with_probes: bool = True) -> list[KitItem]:
    """Every solution `validate` runs, in report order: reference, variants, null, probes."""
    plan: list[KitItem] = []
    if task.reference is not None:
        plan.append(("reference", "reference", "pass", task.reference.cells))
    for v in task.variants:
        plan.append((v.name, "alternative" if v.expect == "pass" else "wrong", v.expect, v.cells))
    plan.append(("null", "null", "fail", None))
    if with_probes:
        plan += [(p.name, "probe", "fail", p.cells) for p in [*shared_probes(), *task_probes(task)]]
    return plan


@dataclass
class _Job:
    """One sandbox run of the queue: a variant of one task, or a shared probe (`task` None)."""

    task: int | None
    name: str
    kind: Kind
    expect: Literal["pass", "fail"]
    cells: list[str] | None
    mounts: list[Mount]


class _Suite:
    """The queue's state: materialised tasks, results as they land, per-task probe grades."""

    def __init__(self, ready: dict[int, MaterialisedTask], backend: str, tmp: Path,
                 say: Progress, total: int) -> None:
        self.ready, self.backend, self.tmp, self.say, self.total = ready, backend, tmp, say, total
        self.results: dict[tuple[int, str], VariantResult] = {}
        self._probe_grades: dict[int, list[GradeResult]] = {}
        self._lock = threading.Lock()
        self._done = 0

    def _note(self, label: str) -> None:
        with self._lock:
            self._done += 1
            self.say(f"{self._done}/{self.total} {label}")

    def run(self, pool: Any, job: _Job) -> None:
        if job.task is None:
            self._shared(pool, job)
            return
        mt = self.ready[job.task]
        started = time.monotonic()
        ws = self.tmp / str(job.task) / job.name
        ws.mkdir(parents=True)
        answer: dict[str, Any] | None = None
        problem: str | None = None
        leaks: list[str] = []
        try:
            if job.cells is not None:
                with pool(self.backend, job.mounts) as sb:
                    answer, problem = run_cells(mt.task, sb, job.cells, ws)
            if answer is not None:
                leaks = [str(x) for x in answer.pop("_leaks", []) or []]
                answer.pop("_scanned", None)
            grades = grade_task(mt.task, answer, truth=mt.truth, workspace=ws, mt=mt,
                                backend=self.backend)
        except CellpromptError as exc:
            result = VariantResult(name=job.name, kind=job.kind, expect=job.expect, passed=False,
                                   ok=False, detail=f"could not run: {exc.message}",
                                   duration_s=round(time.monotonic() - started, 2))
        else:
            result = _verdict(job.name, job.kind, job.expect, grades, answer, problem, leaks,
                              time.monotonic() - started)
        self.results[(job.task, job.name)] = result
        self._note(f"{mt.task.id}: {job.name}")

    def _empty_grades(self, i: int) -> list[GradeResult]:
        """A task's grades of the answer a runtime probe gives: `{}` and an empty workspace."""
        with self._lock:
            if i in self._probe_grades:
                return self._probe_grades[i]
        mt = self.ready[i]
        empty = self.tmp / "empty" / str(i)
        empty.mkdir(parents=True, exist_ok=True)
        grades = grade_task(mt.task, {}, truth=mt.truth, workspace=empty, mt=mt,
                            backend=self.backend)
        with self._lock:
            self._probe_grades[i] = grades
        return grades

    def _shared(self, pool: Any, job: _Job) -> None:
        """One runtime probe over every copy; each task's row: the leaks of any task + its own."""
        assert job.cells is not None
        started = time.monotonic()
        ws = self.tmp / "shared" / job.name
        ws.mkdir(parents=True)
        raw: dict[str, Any] | None = None
        problem: str | None = None
        try:
            with pool(self.backend, job.mounts) as sb:
                any_task = self.ready[next(iter(self.ready))].task
                raw, problem = run_cells(any_task, sb, job.cells, ws, timeout=SHARED_TIMEOUT_S)
        except CellpromptError as exc:
            problem = f"could not run: {exc.message}"
        duration = time.monotonic() - started
        raw = raw or {}
        common = [str(x) for x in raw.get("_leaks", []) or []]
        by_file: dict[str, list[str]] = raw.get("_by_file") or {}
        for i in self.ready:
            own = [str(x) for x in by_file.get(f"{i}.h5ad", [])]
            try:
                grades = self._empty_grades(i)
            except CellpromptError as exc:
                self.results[(i, job.name)] = VariantResult(
                    name=job.name, kind="probe", expect="fail", passed=False, ok=False,
                    detail=f"could not run: {exc.message}", duration_s=round(duration, 2))
                continue
            self.results[(i, job.name)] = _verdict(job.name, "probe", "fail", grades, {},
                                                   problem, [*common, *own], duration)
        self._note(f"every task: {job.name}")


def _report(task: Task, results: list[VariantResult]) -> ValidationReport:
    problems = [f"{r.name} ({r.kind}) {'fails' if r.expect == 'pass' else 'passes'}: {r.detail}"
                for r in results if not r.ok]
    ref = next((r for r in results if r.kind == "reference"), None)
    null = next((r for r in results if r.kind == "null"), None)
    return ValidationReport(task_id=task.id, ok=not problems, problems=problems, variants=results,
                            reference_answer=ref.answer if ref else None,
                            reference_grades=ref.grades if ref else [],
                            null_grades=null.grades if null else [],
                            duration_s=round(sum(r.duration_s for r in results
                                                 if r.name not in SHARED), 2))


def validate_all(tasks: Sequence[Task], *, backend: str = "auto",
                 datasets_dir: Path | None = None, progress: Progress | None = None,
                 jobs: int = 2, with_probes: bool = True) -> list[ValidationReport]:
    """Every task's validity kit as one queue, `jobs` sandboxes at a time; a report per task."""
    from cellprompt.sandbox.pool import SandboxPool

    say = progress or (lambda _msg: None)
    reports: dict[int, ValidationReport] = {}
    ready: dict[int, MaterialisedTask] = {}
    for i, task in enumerate(tasks):
        if task.kind == "open":
            reports[i] = ValidationReport(task_id=task.id, ok=True, problems=[
                "an open task is judged, not graded: nothing to run"])
        elif task.reference is None:
            reports[i] = ValidationReport(task_id=task.id, ok=False,
                                          problems=["the task has no reference solution"])
        else:
            say(f"{task.id}: sealing {task.dataset}")
            ready[i] = materialise(task, datasets_dir=datasets_dir)
    work: list[_Job] = []
    if with_probes and ready:  # first: the filesystem search is the longest run
        every = [Mount(mt.agent_dataset, f"{i}.h5ad") for i, mt in ready.items()]
        work += [_Job(None, p.name, "probe", "fail", p.cells, every) for p in shared_probes()]
    for i, mt in ready.items():
        work += [_Job(i, name, kind, expect, cells, [mt.mount()])
                 for name, kind, expect, cells in kit(mt.task, with_probes=with_probes)
                 if name not in SHARED]
    plan = [{"backend": backend, "datasets": job.mounts} for job in work if job.cells is not None]
    with tempfile.TemporaryDirectory(prefix="cellprompt-validate-") as tmp:
        suite = _Suite(ready, backend, Path(tmp), say, len(work))
        with SandboxPool(max(1, jobs), plan=plan) as pool, \
                ThreadPoolExecutor(max_workers=max(1, jobs)) as workers:
            list(workers.map(lambda job: suite.run(pool, job), work))
    for i, mt in ready.items():
        order = [item[0] for item in kit(mt.task, with_probes=with_probes)]
        reports[i] = _report(mt.task, [suite.results[(i, name)] for name in order])
    return [reports[i] for i in range(len(tasks))]


def validate(task: Task, *, backend: str = "auto", datasets_dir: Path | None = None,
             progress: Progress | None = None, jobs: int = 2, with_probes: bool = True
             ) -> ValidationReport:
    """Run one task's validity kit (sandboxes in parallel, `jobs` at a time); what is off."""
    return validate_all([task], backend=backend, datasets_dir=datasets_dir, progress=progress,
                        jobs=jobs, with_probes=with_probes)[0]
