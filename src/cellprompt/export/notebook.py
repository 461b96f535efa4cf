"""A trial as a Jupyter notebook: what the agent wrote and what the kernel really answered.

Outputs are kept as the kernel produced them (tracebacks with their colours, figures,
execute results with execution counts) so a reader sees the analysis as the agent did.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cellprompt.records.run import Evaluation, ExecutionRecord, TrialRecord
from cellprompt.runs.store import RunStore


def image_base64(value: str, run_dir: Path | None) -> str | None:
    """Base64 of an image given inline or as an artifact path relative to the run folder."""
    looks_like_path = len(value) < 1024 and value.lower().endswith((".png", ".jpg", ".jpeg", ".gif"))
    if not looks_like_path:
        return value
    if run_dir is not None and (run_dir / value).is_file():
        return base64.b64encode((run_dir / value).read_bytes()).decode("ascii")
    return None


def _mime_bundle(data: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {}
    for mime, value in data.items():
        if mime.startswith("image/") and mime != "image/svg+xml":
            image = image_base64(str(value), run_dir)
            if image is not None:
                bundle[mime] = image
        elif mime == "application/json" or mime.endswith("+json"):
            bundle[mime] = value if isinstance(value, (dict, list)) else json.loads(value)
        else:
            bundle[mime] = value
    return bundle


def nb_outputs(ex: ExecutionRecord, run_dir: Path | None = None) -> list[NotebookNode]:
    """The kernel-service outputs of one execution as nbformat outputs."""
    outputs: list[NotebookNode] = []
    shown_images = 0
    for out in ex.outputs:
        kind = out.get("type") or out.get("output_type")
        if kind == "stream":
            outputs.append(new_output("stream", name=out.get("name", "stdout"), text=out.get("text", "")))
        elif kind == "error":
            outputs.append(
                new_output(
                    "error",
                    ename=str(out.get("ename", "Error")),
                    evalue=str(out.get("evalue", "")),
                    traceback=[str(line) for line in out.get("traceback", [])],
                )
            )
        elif kind in ("display_data", "execute_result"):
            bundle = _mime_bundle(out.get("data") or {}, run_dir)
            shown_images += sum(1 for mime in bundle if mime.startswith("image/"))
            if not bundle:
                continue
            if kind == "execute_result":
                outputs.append(
                    new_output(
                        "execute_result",
                        data=bundle,
                        metadata=out.get("metadata") or {},
                        execution_count=ex.execution_count,
                    )
                )
            else:
                outputs.append(new_output("display_data", data=bundle, metadata=out.get("metadata") or {}))
    # figures stored only as artifacts (not referenced by an output) still belong to the cell
    for rel in ex.images[shown_images:]:
        image = image_base64(rel, run_dir)
        if image is not None:
            outputs.append(new_output("display_data", data={"image/png": image}, metadata={}))
    if ex.final_status in ("timeout", "died"):
        note = ex.message or f"execution {ex.final_status}"
        outputs.append(new_output("stream", name="stderr", text=f"[cellprompt] {note}\n"))
    return outputs


def _header(record: TrialRecord, evaluation: Evaluation | None) -> str:
    spec = record.spec
    score = "n/a" if record.score is None else f"{record.score:.3f}"
    lines = [
        f"# {spec.task_id} — {spec.prompt_id} × {spec.model}",
        "",
        f"* **Trial:** `{record.trial_id}` (replicate {spec.replicate})",
        f"* **Task:** `{spec.task_id}` ({spec.task_ref})",
        f"* **Prompt:** `{spec.prompt_id}`",
        f"* **Model:** `{spec.model}`",
        f"* **Status:** {record.status}"
        + (f" (limit: {record.limit})" if record.limit else "")
        + (f" — {record.error}" if record.error else ""),
        (f"* **Open analysis:** graded by the LLM judge only; report from {record.report_source or 'nowhere'}"
         if record.spec.task_kind == "open"
         else f"* **Score:** {score} — {'passed' if record.passed else 'not passed'}"),
        f"* **Cost:** ${record.usage.cost_usd:.4f}, {record.usage.input_tokens} in / "
        f"{record.usage.output_tokens} out tokens, {record.wall_s:.1f}s",
    ]
    if record.grades:
        lines += ["", "## Grades", ""]
        lines += [
            f"* `{g.grader}`: {g.score:.3f} {'✓' if g.passed else '✗'} {g.reasoning}".rstrip()
            for g in record.grades
        ]
    if evaluation is not None:
        lines += ["", f"## Judge ({evaluation.judge_model})", ""]
        if evaluation.ok and evaluation.grade_mean is not None:
            sd = f" ± {evaluation.grade_sd:.1f}" if evaluation.grade_sd else ""
            lines.append(
                f"**Grade:** {evaluation.grade_mean:.1f}{sd} / 100 ({len(evaluation.samples)} sample(s))"
            )
            for sample in evaluation.samples[:1]:
                lines += [f"* {c.name}: {c.score:g}/10 {c.comment}".rstrip() for c in sample.criteria]
                lines += ["", sample.comments]
        else:
            lines.append(f"Judgement failed: {evaluation.error}")
    lines += ["", "## System prompt", "", "```text", record.spec.prompt, "```"]
    if record.first_message:
        lines += ["", "## First message", "", record.first_message]
    return "\n".join(lines)


def trial_to_notebook(
    record: TrialRecord, evaluation: Evaluation | None = None, run_dir: Path | None = None
) -> NotebookNode:
    """A valid nbformat-4 notebook of one trial; `run_dir` resolves figure artifact paths."""
    cells: list[NotebookNode] = [new_markdown_cell(_header(record, evaluation))]
    for turn in record.turns:
        if turn.assistant_text.strip():
            cells.append(new_markdown_cell(turn.assistant_text))
        for ex in turn.executions:
            cell = new_code_cell(ex.code, execution_count=ex.execution_count, outputs=nb_outputs(ex, run_dir))
            cell.metadata["cellprompt"] = {"final_status": ex.final_status, "duration_s": ex.duration_s}
            cells.append(cell)
    if record.spec.task_kind == "open":  # the report is Markdown: shown as written
        cells.append(new_markdown_cell(f"## Final report\n\n{record.report or '(no report was written)'}"))
    else:
        answer = json.dumps(record.answer, indent=2, default=str) if record.answer is not None else "(none)"
        cells.append(new_markdown_cell(f"## Final answer\n\n```json\n{answer}\n```"))
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "cellprompt": {
                "trial_id": record.trial_id,
                "task_id": record.spec.task_id,
                "prompt_id": record.spec.prompt_id,
                "model": record.spec.model,
            },
        },
    )
    nbformat.validate(nb)
    return nb


def write_notebook(nb: NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def write_run_notebooks(store: RunStore,
                        trial_id: str | None = None) -> list[tuple[TrialRecord, NotebookNode, Path]]:
    """One notebook per trial under `notebooks/`; the trial's judge verdict goes in its header."""
    evaluations = store.evaluations()
    written = []
    for record in store.trials():
        if trial_id is not None and record.trial_id != trial_id:
            continue
        nb = trial_to_notebook(record, evaluations.get(record.trial_id), run_dir=store.path)
        path = write_notebook(nb, store.path / "notebooks" / f"{record.trial_id}.ipynb")
        written.append((record, nb, path))
    return written
