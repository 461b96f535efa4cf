"""From a trial to the evidence a reflection model rewrites a prompt from, and to its score.

The original loop showed the reflection model the first 3,000 characters of
the conversation, which was mostly the prompt itself. Here the model sees what
went wrong: the graders that failed and why, the judge's comment on each
criterion, the error tails, and the code the agent ran.
"""

from __future__ import annotations

import json
import re

from cellprompt.runs.schema import Evaluation, TrialRecord

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CODE_CHARS = 1500  # per cell: the head and tail of long cells
OUTPUT_TAIL = 600
ERROR_LINES = 12
MAX_CELLS = 6  # the last cells; early exploration says little about what failed
OBJECTIVE_CHARS = 1500


def trial_score(record: TrialRecord, evaluation: Evaluation | None, judge_weight: float) -> float:
    """In [0, 1]: the deterministic grade, blended with the judge's grade when there is one."""
    det = record.score if record.score is not None else 0.0
    if evaluation is None or not evaluation.ok or evaluation.grade_mean is None or judge_weight <= 0:
        return det
    return (1 - judge_weight) * det + judge_weight * evaluation.grade_mean / 100.0


def scorable(record: TrialRecord, evaluation: Evaluation | None, judge_weight: float) -> bool:
    """False for a trial whose score would measure the infrastructure, not the prompt.

    A trial that errored (sandbox, provider, interruption) and an open analysis whose judge
    never returned a valid verdict are left out of means and counted apart: scoring them 0
    would punish a prompt for an outage.
    """
    if record.status == "error":
        return False
    if record.spec.task_kind == "open":
        judged = evaluation is not None and evaluation.ok and evaluation.grade_mean is not None
        return judge_weight > 0 and judged
    return True


def _clip_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} characters omitted] …\n{text[-half:]}"


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"… {text[-limit:]}"


def _output_text(outputs: list[dict]) -> str:
    parts: list[str] = []
    for out in outputs:
        kind = out.get("type")
        if kind == "stream":
            parts.append(str(out.get("text", "")))
        elif kind == "error":
            tb = [_ANSI.sub("", line) for line in out.get("traceback") or []]
            lines = "\n".join(tb).splitlines()[-ERROR_LINES:]
            parts.append(f"ERROR {out.get('ename')}: {out.get('evalue')}\n" + "\n".join(lines))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            parts.append(str(data.get("text/plain", "[figure]" if "image/png" in data else "")))
    return _ANSI.sub("", "\n".join(p for p in parts if p))


def render_trial(record: TrialRecord, evaluation: Evaluation | None, score: float) -> str:
    """A trial as plain text for the reflection prompt; long parts are clipped, never the verdicts."""
    lines = [
        f"### Task {record.spec.task_id} (replicate {record.spec.replicate}): score {score:.2f}, "
        f"status {record.status}" + (f" ({record.limit})" if record.limit else "")
    ]
    if record.first_message:
        lines += [
            "Objective the agent received:",
            _clip_middle(record.first_message.strip(), OBJECTIVE_CHARS),
        ]
    if record.error:
        lines.append(f"Trial error: {_tail(record.error, OUTPUT_TAIL)}")
    failed = [g for g in record.grades if not g.passed]
    passed = [g for g in record.grades if g.passed]
    if failed:
        lines.append("Failed graders:")
        lines += [
            f"- {g.grader or 'grader'} (score {g.score:.2f}): {g.reasoning.strip() or 'no reasoning'}"
            for g in failed
        ]
    if passed:
        lines.append("Passed graders: " + ", ".join(g.grader or "grader" for g in passed))
    if evaluation is not None and evaluation.ok:
        lines.append(f"Judge grade: {evaluation.grade_mean:.0f}/100")
        for sample in evaluation.samples[:1]:
            lines += [f"- {c.name} {c.score:.0f}/10: {c.comment.strip()}" for c in sample.criteria]
            if sample.comments.strip():
                lines.append(f"Judge comments: {sample.comments.strip()}")
    cells = record.code_cells
    if cells:
        shown = cells[-MAX_CELLS:]
        lines.append(f"Agent code ({len(cells)} cells, last {len(shown)} shown):")
        for cell in shown:
            lines.append(f"```python\n{_clip_middle(cell.code.strip(), CODE_CHARS)}\n```")
            out = _output_text(cell.outputs)
            if cell.final_status != "ok" or out:
                lines.append(f"-> {cell.final_status}: {_tail(out.strip(), OUTPUT_TAIL) if out else ''}")
    elif record.turns:
        last = record.turns[-1].assistant_text.strip()
        if last:
            lines.append(f"Agent's last message (no code ran): {_clip_middle(last, OUTPUT_TAIL)}")
    if record.answer is not None:
        lines.append(f"Submitted answer: {_clip_middle(json.dumps(record.answer, default=str), OUTPUT_TAIL)}")
    else:
        lines.append("No answer was submitted.")
    return "\n".join(lines)
