"""From a trial to the evidence a reflection model rewrites a prompt from, and to its score.

The original loop showed the reflection model the first 3,000 characters of
the conversation, which was mostly the prompt itself. Here the model sees what
went wrong: the graders that failed and why, the judge's comment on each
criterion, the error tails, and the code the agent ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from cellprompt.grading.stats import trial_score
from cellprompt.records.grades import GradeResult
from cellprompt.records.outputs import clip, output_text, strip_ansi
from cellprompt.records.run import Evaluation, TrialRecord

T = TypeVar("T")

CODE_CHARS = 1500  # per cell: the head and tail of long cells
OUTPUT_TAIL = 600
ERROR_LINES = 12
MAX_CELLS = 6  # the last cells; early exploration says little about what failed
EVIDENCE_TRIALS = 6  # the worst trials shown to the reflection model, plus the best one for contrast
OBJECTIVE_CHARS = 1500

# built-in graders whose messages quote the truth ("188 vs 190", "'D' is not C", "missing CD79A"):
# their verdicts are rebuilt from structured fields and their own text is never shown
QUOTING_GRADERS = {
    "numeric_tolerance", "multiple_choice", "distribution_comparison", "label_agreement",
    "label_set_jaccard", "marker_gene_precision_recall", "pseudotime_correlation", "python_check",
}
# metric names that hold (or give away, like |answer - truth|) the expected value
_TRUTH_KEY = re.compile(r"expected|correct|truth|error|false_neg|missing|mapping|per_class|allowed", re.I)
_SHAPE = re.compile(r"\s*(missing|not an? [\w -]+)", re.I)  # the answer's shape, not its value


def fitness(record: TrialRecord, evaluation: Evaluation | None, judge_weight: float) -> float:
    """In [0, 1]: the trial's score (`grading.stats.trial_score`), blended with the judge's grade
    when there is one: what evolution maximises."""
    det = trial_score(record)
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


def _truth_values(metrics: dict) -> list[str]:
    """Every string and number under a truth-like metric key (dict keys included), longest first."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                found.add(str(k))
                walk(v)
        elif isinstance(value, list | tuple | set):
            for v in value:
                walk(v)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int | float):
            found.update({f"{value:g}", str(value)})
        else:
            found.add(str(value))

    for key, value in metrics.items():
        if _TRUTH_KEY.search(key):
            walk(value)
    return sorted((v for v in found if len(v.strip()) >= 1), key=len, reverse=True)


def _field_verdict(grade: GradeResult, name: str) -> str:
    """What was wrong with one answer field, never what it should have been."""
    for line in grade.reasoning.splitlines():
        if re.match(rf"\W*{re.escape(name)}\s*:", line) and (m := _SHAPE.match(line.split(":", 1)[1])):
            return "missing" if m.group(1).lower() == "missing" else "not in the requested format"
    if grade.grader == "multiple_choice":
        return "not the right choice"
    if f"{name}_expected" in grade.metrics:
        return "outside the tolerance"
    return "below the pass threshold"


def grade_feedback(grade: GradeResult) -> str:
    """A failed grader as evidence: which fields failed and how, with the agent's own metrics.

    Grader messages are written for people who may see the truth; the reflection
    model must not (it would write "the answer is C" into the prompt). Built-in
    graders that quote the truth are rebuilt from their field scores and
    truth-free metrics; any other grader's text is shown with every value found
    under a truth-like metric replaced by "[withheld]".
    """
    parts = [
        f"{name}: {_field_verdict(grade, name)}" for name, s in grade.field_scores.items() if s < 1.0
    ]
    shown = {
        k: v
        for k, v in grade.metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not _TRUTH_KEY.search(k)
        and not k.endswith("_actual") and k != "answer"
    }
    if shown:
        parts.append(", ".join(f"{k} {v:.3g}" for k, v in list(shown.items())[:8]))
    if grade.grader in QUOTING_GRADERS:
        head = grade.reasoning.split(":", 1)
        if not grade.field_scores and len(head) == 2 and (m := _SHAPE.match(head[1])):
            missing = m.group(1).lower() == "missing"
            parts.insert(0, f"{head[0].strip()}: {'missing' if missing else 'not in the requested format'}")
    elif grade.reasoning.strip():
        text = grade.reasoning.strip()
        for value in _truth_values(grade.metrics):
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w])", "[withheld]", text)
        parts.append(text)
    return "; ".join(parts) or "did not pass"


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"… {text[-limit:]}"


def _output_text(outputs: list[dict]) -> str:
    """The shared rendering, but an error as its name and the last lines of its traceback."""
    parts: list[str] = []
    for out in outputs:
        if out.get("type") == "error":
            lines = output_text(out).splitlines()[-ERROR_LINES:]
            parts.append(f"ERROR {out.get('ename')}: {out.get('evalue')}\n" + "\n".join(lines))
        else:
            parts.append(strip_ansi(output_text(out)))
    return "\n".join(p for p in parts if p)


def shown_answer(record: TrialRecord) -> object:
    """The agent's answer with every value a truth-holding grader accepted withheld.

    A right answer next to "passed" is the truth by another name ("answer: C", passed).
    """
    quoting = [g for g in record.grades if g.grader in QUOTING_GRADERS]
    if any(g.passed and not g.field_scores for g in quoting):
        return "[withheld: it passed a grader that holds the truth]"
    right = {name for g in quoting for name, score in g.field_scores.items() if score >= 1.0}
    if not right or not isinstance(record.answer, dict):
        return "[withheld: it passed a grader that holds the truth]" if right else record.answer
    return {k: "[right, withheld]" if k in right else v for k, v in record.answer.items()}


def render_trial(record: TrialRecord, evaluation: Evaluation | None, score: float) -> str:
    """A trial as plain text for the reflection prompt; long parts are clipped, never the verdicts."""
    lines = [
        f"### Task {record.spec.task_id} (replicate {record.spec.replicate}): score {score:.2f}, "
        f"status {record.status}" + (f" ({record.limit})" if record.limit else "")
    ]
    if record.first_message:
        lines += [
            "Objective the agent received:",
            clip(record.first_message.strip(), OBJECTIVE_CHARS),
        ]
    if record.error:
        lines.append(f"Trial error: {_tail(record.error, OUTPUT_TAIL)}")
    failed = [g for g in record.grades if not g.passed]
    passed = [g for g in record.grades if g.passed]
    if failed:
        lines.append("Failed graders:")
        lines += [
            f"- {g.grader or 'grader'} (score {g.score:.2f}): {grade_feedback(g)}"
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
            lines.append(f"```python\n{clip(cell.code.strip(), CODE_CHARS)}\n```")
            out = _output_text(cell.outputs)
            if cell.final_status != "ok" or out:
                lines.append(f"-> {cell.final_status}: {_tail(out.strip(), OUTPUT_TAIL) if out else ''}")
    elif record.turns:
        last = record.turns[-1].assistant_text.strip()
        if last:
            lines.append(f"Agent's last message (no code ran): {clip(last, OUTPUT_TAIL)}")
    if record.answer is not None:
        lines.append(f"Submitted answer: {clip(json.dumps(shown_answer(record), default=str), OUTPUT_TAIL)}")
    else:
        lines.append("No answer was submitted.")
    return "\n".join(lines)


def select_evidence(trials: Sequence[T], score: Callable[[T], float]) -> list[T]:
    """The trials reflection sees: the worst first (they say what to fix), then the best
    one (what already works). One rule for both strategies."""
    ranked = sorted(trials, key=score)
    return ranked[:EVIDENCE_TRIALS] + ranked[EVIDENCE_TRIALS:][-1:]


def evidence_texts(trials: list[tuple[TrialRecord, Evaluation | None]], judge_weight: float) -> list[str]:
    """The evidence of a set of trials (`select_evidence`), each rendered by `render_trial`."""
    scored = [(r, e, fitness(r, e, judge_weight)) for r, e in trials]
    return [render_trial(r, e, score) for r, e, score in select_evidence(scored, lambda t: t[2])]
