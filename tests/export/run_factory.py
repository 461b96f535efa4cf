"""Run folders for export tests, filled with outputs a real ipykernel produced.

The outputs (streams, an ANSI-coloured traceback, a matplotlib PNG, an execute_result)
come from a real kernel driven with jupyter_client and are converted to the kernel
service's output dicts; figures are stored as artifact files, as the agent loop does.
"""

from __future__ import annotations

import base64
import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

from cellprompt.grading.base import GradeResult
from cellprompt.llm.base import Usage
from cellprompt.records.run import (
    Evaluation,
    ExecutionRecord,
    JudgeCriterion,
    JudgeSample,
    RunManifest,
    TrialRecord,
    TrialSpec,
    Turn,
    utcnow,
)
from cellprompt.runs.store import RunStore

CELLS = {
    "streams": "import sys\nprint('hello from stdout')\nprint('careful', file=sys.stderr)",
    "error": "def f():\n    return 1 / 0\nf()",
    "figure": "%matplotlib inline\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(3, 2))\n"
    "ax.plot([1, 2, 3], [3, 1, 2])\nax.set_title('umap-ish')\nplt.show()",
    "result": "21 * 2",
    # not in the default trials: tests that need an HTML output put these in a turn
    "frame": "import pandas as pd\npd.DataFrame({'cluster': ['B', 'T'], 'n_cells': [120, 340]})",
    "hostile": "from IPython.display import HTML, display\ndisplay(HTML(" + repr(
        "<div><b>summary</b><table><tr><td>safe cell</td></tr></table>"
        "<script>window.__xss = 'script'</script>"
        "<img src=x onerror=\"window.__xss = 'onerror'\">"
        "<iframe src=\"javascript:window.parent.__xss = 'iframe'\"></iframe>"
        "<a href=\"javascript:window.__xss = 'href'\" id=\"evil-link\">click me</a>"
        "<svg onload=\"window.__xss = 'svg'\"></svg>"
        "<link rel=stylesheet href=\"http://203.0.113.9/x.css\">"
        "<p style=\"background:url(http://203.0.113.9/p.png)\" onclick=\"window.__xss = 'click'\">"
        "styled</p><form action=\"http://203.0.113.9/\"><input name=q></form></div>"
    ) + "))",
}
# task id -> category of the task files `make_run` writes for the trials it makes
CATEGORIES = {"t_cluster": "clustering", "t_qc": "qc"}


def _execute(kc: Any, code: str) -> tuple[list[dict[str, Any]], int | None, str]:
    msg_id = kc.execute(code)
    outputs: list[dict[str, Any]] = []
    status = "ok"
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            outputs.append({"type": "stream", "name": content["name"], "text": content["text"]})
        elif kind == "error":
            status = "error"
            outputs.append(
                {
                    "type": "error",
                    "ename": content["ename"],
                    "evalue": content["evalue"],
                    "traceback": content["traceback"],
                }
            )
        elif kind in ("display_data", "execute_result"):
            outputs.append(
                {"type": kind, "data": dict(content["data"]), "metadata": content.get("metadata", {})}
            )
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=60)
    return outputs, reply["content"].get("execution_count"), status


def kernel_cells() -> dict[str, ExecutionRecord]:
    """Run CELLS in a real kernel; images stay base64 until a run stores them as artifacts."""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        records = {}
        for name, code in CELLS.items():
            outputs, count, status = _execute(kc, code)
            records[name] = ExecutionRecord(
                code=code,
                outputs=outputs,
                final_status=status,  # type: ignore[arg-type]
                execution_count=count,
                duration_s=0.1,
            )
        return records
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _with_artifacts(ex: ExecutionRecord, store: RunStore, trial_id: str, number: int) -> ExecutionRecord:
    ex = copy.deepcopy(ex)
    for out in ex.outputs:
        data = out.get("data")
        if isinstance(data, dict) and "image/png" in data:
            folder = store.artifacts_dir(trial_id)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"fig-{number}.png"
            path.write_bytes(base64.b64decode(data["image/png"]))
            rel = str(path.relative_to(store.path))
            data["image/png"] = rel
            ex.images.append(rel)
    return ex


def write_task(folder: Path, task_id: str, category: str) -> Path:
    """A minimal valid task file: the report reads a trial's category from its task."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task_id}.yaml"
    path.write_text(
        f"id: {task_id}\ntitle: {task_id}\ndataset: builtin:pbmc68k_reduced\nobjective: Count them.\n"
        "graders:\n  - {type: numeric_tolerance, config: {ground_truth: {n: 3}}}\n"
        f"metadata: {{category: {category}}}\n"
    )
    return path


def make_trial(
    store: RunStore,
    cells: dict[str, ExecutionRecord],
    *,
    index: int,
    prompt_id: str,
    model: str,
    task_id: str,
    score: float | None,
    status: str = "submitted",
    replicate: int = 0,
    task_ref: str | None = None,
) -> TrialRecord:
    trial_id = f"{prompt_id}-{model.replace(':', '_')}-{task_id}-{replicate}-{index}"
    spec = TrialSpec(
        trial_id=trial_id,
        prompt_id=prompt_id,
        prompt=f"You are {prompt_id}. Be careful.",
        task_id=task_id,
        task_ref=task_ref or f"/nonexistent/{task_id}.yaml",
        model=model,
        replicate=replicate,
    )
    turns = [
        Turn(
            index=0,
            assistant_text="First I look at the data.\n\n**Plan:** streams, then a figure.",
            executions=[cells["streams"], cells["error"]],
            usage=Usage(input_tokens=100, output_tokens=20),
        ),
        Turn(
            index=1,
            assistant_text="Fixed the division; here is the plot.",
            executions=[_with_artifacts(cells["figure"], store, trial_id, 1), cells["result"]],
            usage=Usage(input_tokens=150, output_tokens=30),
        ),
        Turn(index=2, assistant_text="The answer is 42.", stop_reason="end_turn"),
    ]
    passed = score is not None and score >= 0.5
    grades = (
        []
        if score is None
        else [
            GradeResult(
                grader="numeric_tolerance",
                score=score,
                passed=passed,
                reasoning=f"answer within tolerance: {passed}",
            )
        ]
    )
    start = utcnow()
    return TrialRecord(
        trial_id=trial_id,
        spec=spec,
        status=status,
        first_message=f"Solve {task_id} on /data/x.h5ad",  # type: ignore[arg-type]
        turns=turns,
        answer={"n_clusters": 42} if score is not None else None,
        grades=grades,
        score=score,
        passed=passed,
        usage=Usage(input_tokens=250, output_tokens=50, cost_usd=0.002 + 0.001 * index),
        wall_s=3.0 + index,
        started_at=start,
        finished_at=start + timedelta(seconds=3),
    )


def make_evaluation(record: TrialRecord, grade: float, ok: bool = True) -> Evaluation:
    if not ok:
        return Evaluation(
            trial_id=record.trial_id,
            judge_model="openai:judge",
            ok=False,
            error="no valid verdict after 3 attempts; last: reply is not JSON",
        )
    sample = JudgeSample(
        criteria=[JudgeCriterion(name="correctness", score=grade / 10, comment="checked")],
        grade=grade,
        comments=f"Solid work, grade {grade}.",
    )
    return Evaluation(
        trial_id=record.trial_id,
        judge_model="openai:judge",
        ok=True,
        samples=[sample],
        grade_mean=grade,
        grade_sd=0.0,
        usage=Usage(cost_usd=0.0005),
    )


def make_run(
    outputs: Path,
    cells: dict[str, ExecutionRecord],
    run_id: str = "run-a",
    scores: dict[tuple[str, str, str], list[float | None]] | None = None,
    judge: bool = True,
    categories: dict[str, str] = CATEGORIES,
) -> RunStore:
    """A run: for each (prompt, model, task) key, one trial per listed score (replicates 0, 1, …).

    Tasks named in `categories` get a task file of that category; others a missing one ('other').
    """
    scores = scores or {
        ("concise", "openai:gpt-x", "t_cluster"): [1.0, 0.8, 0.6],
        ("concise", "openai:gpt-x", "t_qc"): [1.0, None],
        ("verbose", "anthropic:claude-x", "t_cluster"): [0.2, 0.0, 0.4],
        ("verbose", "anthropic:claude-x", "t_qc"): [0.5, 0.7],
    }
    store = RunStore.create(outputs, RunManifest(run_id=run_id, status="finished"))
    index = 0
    for (prompt_id, model, task_id), values in scores.items():
        for replicate, score in enumerate(values):
            record = make_trial(
                store,
                cells,
                index=index,
                prompt_id=prompt_id,
                model=model,
                task_id=task_id,
                score=score,
                status="submitted" if score is not None else "error",
                replicate=replicate,
                task_ref=str(write_task(outputs / "tasks", task_id, categories[task_id]))
                if task_id in categories
                else None,
            )
            store.append_trial(record)
            if judge:
                store.append_evaluation(make_evaluation(record, grade=100 * (score or 0) * 0.9 + 5))
            index += 1
    return store
