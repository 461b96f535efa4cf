"""What the LLM judge reads: the transcript, the report or answer, and the figures.

Kept apart from the verdict logic in `judge.py`: this is the part that decides how
much of a long trial fits in front of the judge, and which figures it sees.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Protocol

from cellprompt.records.outputs import clip, output_text, strip_ansi
from cellprompt.records.run import ExecutionRecord, TrialRecord

__all__ = ["output_text", "strip_ansi"]  # re-exported: the judge's public helpers

CODE_LIMIT = 3000
OUTPUT_LIMIT = 2000
TEXT_LIMIT = 4000
MAX_FIGURES = 4
MAX_OPEN_FIGURES = 8  # an open analysis is argued with its figures
REPORT_LIMIT = 12000


class JudgedTask(Protocol):
    """What the judge reads of a task (`tasks.Task` is one); the trial alone serves without it."""

    @property
    def kind(self) -> str: ...
    @property
    def objective(self) -> str: ...
    @property
    def rubric(self) -> str | None: ...


def is_open(record: TrialRecord, task: JudgedTask | None) -> bool:
    return (task is not None and task.kind == "open") or record.spec.task_kind == "open"


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail: the start says what ran, the end says how it finished."""
    return clip(text, limit, head=0.6)


def _execution_text(ex: ExecutionRecord) -> str:
    out = "".join(
        output_text(o) if output_text(o).endswith("\n") else output_text(o) + "\n" for o in ex.outputs
    )
    status = "" if ex.final_status == "ok" else f" [{ex.final_status}]"
    return (
        f"```python\n{truncate(ex.code, CODE_LIMIT)}\n```\nOutput{status}:\n"
        f"```\n{truncate(out.strip(), OUTPUT_LIMIT)}\n```"
    )


def transcript(record: TrialRecord) -> str:
    """The conversation as the judge reads it: assistant text, code and truncated outputs."""
    parts: list[str] = []
    for turn in record.turns:
        if turn.assistant_text.strip():
            parts.append(f"### Assistant (turn {turn.index})\n{truncate(turn.assistant_text, TEXT_LIMIT)}")
        parts.extend(_execution_text(ex) for ex in turn.executions)
    return "\n\n".join(parts) or "(the agent produced no turns)"


def user_message(record: TrialRecord, task: JudgedTask | None, show_system_prompt: bool) -> str:
    objective = task.objective if task is not None else record.first_message
    parts = [f"## Task\n{truncate(objective, TEXT_LIMIT)}"]
    if record.first_message and task is not None and record.first_message != task.objective:
        parts.append(f"## First message the agent received\n{truncate(record.first_message, TEXT_LIMIT)}")
    if show_system_prompt:
        parts.append(f"## System prompt given to the agent\n{truncate(record.spec.prompt, TEXT_LIMIT)}")
    parts.append(f"## Conversation\n{transcript(record)}")
    if is_open(record, task):
        source = f" (from {record.report_source})" if record.report_source else ""
        report = truncate(record.report or "(no report was written)", REPORT_LIMIT)
        parts.append(f"## Final report{source}\n{report}")
    else:
        answer = json.dumps(record.answer, indent=1, default=str) if record.answer is not None else "(none)"
        parts.append(f"## Submitted answer\n{truncate(answer, TEXT_LIMIT)}")
    ending = f"status {record.status}" + (f", limit {record.limit}" if record.limit else "")
    ending += f", error: {record.error}" if record.error else ""
    parts.append(f"## How the trial ended\n{ending}")
    if record.grades:
        grades = "\n".join(
            f"- {g.grader}: score {g.score:.2f}, {'passed' if g.passed else 'failed'}. "
            f"{truncate(g.reasoning, 500)}"
            for g in record.grades
        )
        parts.append(f"## Deterministic grades (from withheld ground truth)\n{grades}")
    return "\n\n".join(parts)


def figure_paths(record: TrialRecord, run_dir: Path | None, limit: int = MAX_FIGURES) -> list[Path]:
    """Figures to show the judge: those the agent saved in its workspace (the ones its report
    cites) first, then the ones its code displayed; at most `limit`, spread over the analysis."""
    if run_dir is None:
        return []
    workspace = run_dir / "artifacts" / record.trial_id / "workspace"
    saved = sorted(p for p in workspace.rglob("*.png") if p.is_file() and not p.is_symlink()) \
        if workspace.is_dir() else []
    shown = [run_dir / rel for ex in record.code_cells for rel in ex.images if (run_dir / rel).is_file()]
    found = saved[:limit]
    rest = limit - len(found)
    if rest > 0 and shown:  # evenly spaced, so late figures (the results) are not all cut
        step = max(1.0, len(shown) / rest)
        found += [shown[int(i * step)] for i in range(min(rest, len(shown)))]
    return found


def figures_b64(record: TrialRecord, run_dir: Path | None, limit: int = MAX_FIGURES) -> list[str]:
    return [base64.b64encode(p.read_bytes()).decode("ascii") for p in figure_paths(record, run_dir, limit)]
