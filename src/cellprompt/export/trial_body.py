"""One trial as the JSON its report block holds: what a reader sees when opening it.

The page renders it only when opened. HTML outputs arrive here sanitised and code
highlighted (`export.markup`), so the page may insert both as markup; every other
string is set as text by the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cellprompt.export.markup import highlight_python, sanitise_html
from cellprompt.export.notebook import image_base64
from cellprompt.records.outputs import clip, output_text
from cellprompt.records.run import Evaluation, ExecutionRecord, TrialRecord

OUTPUT_LIMIT = 20_000


def _clip(text: str) -> str:
    return clip(text, OUTPUT_LIMIT)


def _rich_output(data: dict[str, Any]) -> dict[str, str] | None:
    """An HTML output (a DataFrame) as cleaned markup; one too big to show whole falls back to text."""
    markup = data.get("text/html")
    if isinstance(markup, list):  # nbformat may split a mime bundle's text into lines
        markup = "".join(markup)
    if not isinstance(markup, str) or len(markup) > OUTPUT_LIMIT:
        return None
    return {"k": "html", "html": sanitise_html(markup)}


def _outputs(ex: ExecutionRecord, run_dir: Path) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    shown = 0
    for out in ex.outputs:
        kind = out.get("type") or out.get("output_type")
        if kind == "stream":
            items.append(
                {"k": "stream", "name": str(out.get("name", "stdout")), "text": _clip(out.get("text", ""))}
            )
        elif kind == "error":
            items.append({"k": "error", "text": _clip(output_text(out))})
        elif kind in ("display_data", "execute_result"):
            data = out.get("data") or {}
            image = next((m for m in ("image/png", "image/jpeg") if m in data), None)
            b64 = image_base64(str(data[image]), run_dir) if image else None
            rich = _rich_output(data)
            if image and b64:
                shown += 1
                items.append({"k": "img", "src": f"data:{image};base64,{b64}"})
            elif rich is not None:
                items.append(rich)
            elif "text/plain" in data:
                items.append({"k": "text", "text": _clip(str(data["text/plain"]))})
    for rel in ex.images[shown:]:
        b64 = image_base64(rel, run_dir)
        if b64:
            items.append({"k": "img", "src": f"data:image/png;base64,{b64}"})
    return items


def _judge(ev: Evaluation | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    return {
        "ok": ev.ok,
        "model": ev.judge_model,
        "grade": ev.grade_mean,
        "sd": ev.grade_sd,
        "error": ev.error,
        "range": ev.grade_range,
        "disagreement": ev.disagreement,
        "figures": ev.figures_shown,
        "cost": ev.usage.cost_usd,
        "samples": [s.model_dump() for s in ev.samples],
    }


def trial_payload(run_id: str, record: TrialRecord, ev: Evaluation | None, run_dir: Path) -> dict[str, Any]:
    """Everything a reader sees when opening one trial."""
    return {
        "id": record.trial_id,
        "run": run_id,
        "task": record.spec.task_id,
        "prompt_id": record.spec.prompt_id,
        "model": record.spec.model,
        "status": record.status,
        "limit": record.limit,
        "error": record.error,
        "score": record.score,
        "passed": record.passed,
        "cost": record.usage.cost_usd,
        "cost_unknown": record.usage.cost_unknown,
        "tokens": record.usage.input_tokens + record.usage.output_tokens,
        "wall": record.wall_s,
        "system_prompt": record.spec.prompt,
        "first_message": record.first_message,
        "grades": [g.model_dump(include={"grader", "score", "passed", "reasoning"}) for g in record.grades],
        "judge": _judge(ev),
        "turns": [
            {
                "text": t.assistant_text,
                "execs": [
                    {
                        "code": ex.code,
                        "code_html": highlight_python(ex.code),
                        "status": ex.final_status,
                        "count": ex.execution_count,
                        "message": ex.message,
                        "outputs": _outputs(ex, run_dir),
                    }
                    for ex in t.executions
                ],
            }
            for t in record.turns
        ],
        "answer": json.dumps(record.answer, indent=2, default=str) if record.answer is not None else None,
        "kind": record.spec.task_kind,
        "report": record.report,
        "report_source": record.report_source,
    }
