"""One trial, start to finish: a pure function of its `TrialSpec`.

The record is returned, never written from here into shared state, so the same
function runs in a thread, a process or (later) a Ray worker.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from cellprompt.agent import AgentLimits, AgentOutcome
from cellprompt.errors import CellpromptError
from cellprompt.mcp.external import runner_for
from cellprompt.records.run import TrialRecord, TrialSpec, utcnow
from cellprompt.runs.open_task import REPORT_FILE, open_first_message, report_text
from cellprompt.sandbox.base import Mount, Sandbox
from cellprompt.tasks.spec import Task

MAX_WORKSPACE_COPY_BYTES = 50 * 1024 * 1024


class SandboxProvider(Protocol):
    """Where trials get their fresh sandbox from (a warm pool, or a new one each time)."""

    def __call__(self, backend: str, mounts: list[Mount]) -> AbstractContextManager[Sandbox]: ...


def open_fresh(backend: str, mounts: list[Mount]) -> AbstractContextManager[Sandbox]:
    from cellprompt.sandbox import open_sandbox

    return open_sandbox(backend=backend, datasets=mounts)


def first_message(task: Task, data_description: str) -> str:
    """Objective, data, and the answer format: everything the agent is told."""
    parts = [task.objective.strip(), "", "## Data", data_description, "", "## Answer"]
    fields = [f for f in task.answer if f.type != "file"]
    files = [f for f in task.answer if f.type == "file"]
    if fields:
        parts.append("Submit a JSON object with these fields (submit_answer tool, or an "
                     "<EVAL_ANSWER>{...}</EVAL_ANSWER> block):")
        parts += [f"- `{f.name}` ({f.type}): {f.description}".rstrip(": ") for f in fields]
    if files:
        parts.append("Write these files, then submit (an empty answer object is fine):")
        parts += [f"- `/workspace/{f.path or f.name}`: {f.description}" for f in files]
    return "\n".join(parts)


def _copy_workspace(sandbox: Sandbox, dest: Path) -> Path:
    """Keep what the agent wrote (answers, tables) beside the trial, within a size cap.

    Through the sandbox's archive (never by walking a folder the agent controls); what
    was left out is listed in `workspace.skipped.txt` beside it.
    """
    skipped = sandbox.export_workspace(dest, MAX_WORKSPACE_COPY_BYTES)
    if skipped:
        (dest.parent / "workspace.skipped.txt").write_text("\n".join(skipped) + "\n")
    return dest


def _read_report(sandbox: Sandbox) -> bytes | None:
    """The open analysis' report file, if the agent wrote one (read before the sandbox closes)."""
    try:
        return sandbox.read_file(REPORT_FILE)
    except (FileNotFoundError, CellpromptError):
        return None


def execute_trial(spec: TrialSpec, run_dir: Path, *, provider: SandboxProvider = open_fresh,
                  should_stop: Callable[[], bool] = lambda: False,
                  agent: Callable[..., AgentOutcome] | None = None) -> TrialRecord:
    """Run the agent on the task in a fresh sandbox, grade it, and return the record.

    `agent` replaces the loop that plays the trial (`cellprompt mcp serve` passes its MCP
    server); by default the model's own: the built-in loop, or an `agent:` command's.
    """
    from cellprompt.config import get_settings
    from cellprompt.datasets import describe
    from cellprompt.datasets.footprint import check_fits
    from cellprompt.llm import make_model
    from cellprompt.tasks import materialise
    from cellprompt.tasks.validate import grade_task

    started, t0 = utcnow(), time.monotonic()
    artifacts = run_dir / "artifacts" / spec.trial_id
    record = TrialRecord(trial_id=spec.trial_id, spec=spec, status="error", started_at=started)
    try:
        from cellprompt.runs.plan import spec_task

        task = spec_task(spec)  # --fresh: the generated dataset drawn with the run's seed
        mat = materialise(task)
        mount = mat.mount()
        check_fits(mat.agent_dataset, get_settings().sandbox_memory, declared=task.limits.memory,
                   name=mat.mount_name)  # a dataset that cannot fit fails now, in one line
        is_open = task.kind == "open"
        description = describe(mat.agent_dataset).as_text(mat.dataset.name)
        record.first_message = (open_first_message(task, description) if is_open
                                else first_message(task, description))
        model = spec.model if agent else make_model(
            spec.model, base_url=spec.base_url,
            reference_cells=task.reference.cells if task.reference else None)
        limits = AgentLimits.from_limits(spec.limits.merged(task.limits.agent_limits()))
        figures: list[int] = [0]

        def save_image(b64: str) -> str:
            figures[0] += 1
            artifacts.mkdir(parents=True, exist_ok=True)
            path = artifacts / f"fig-{figures[0]}.png"
            path.write_bytes(base64.b64decode(b64))
            return str(path.relative_to(run_dir))

        with provider(spec.sandbox_backend, [mount]) as sandbox:
            play = agent or runner_for(model)
            outcome = play(system_prompt=spec.prompt, first_message=record.first_message,
                           model=model, sandbox=sandbox, limits=limits, save_image=save_image,
                           should_stop=should_stop, open_ended=is_open)
            raw_report = _read_report(sandbox) if is_open else None
            workspace = _copy_workspace(sandbox, artifacts / "workspace")
        record.status, record.limit, record.error = outcome.status, outcome.limit, outcome.error
        record.turns, record.answer, record.usage = outcome.turns, outcome.answer, outcome.usage
        record.model_s, record.exec_s = outcome.model_s, outcome.exec_s
        if is_open:  # judged later by the LLM judge: no graders, no score
            last = next((t.assistant_text for t in reversed(outcome.turns) if t.assistant_text.strip()), "")
            record.report, record.report_source = report_text(raw_report, outcome.answer, last)
        else:
            t_grade = time.monotonic()
            # as `tasks validate` grades: a python_check sees the agent's dataset, same backend
            record.grades = grade_task(task, outcome.answer, truth=mat.truth, workspace=workspace,
                                       mt=mat, backend=spec.sandbox_backend)
            record.grade_s = time.monotonic() - t_grade
            record.score = sum(g.score for g in record.grades) / len(record.grades)
            record.passed = all(g.passed for g in record.grades)
    except CellpromptError as exc:
        record.status, record.error = "error", str(exc)
    record.wall_s = time.monotonic() - t0
    record.finished_at = utcnow()
    return record
