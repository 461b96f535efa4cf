"""An open run: prompts × datasets × models × replicates, with no task file written by the user.

Each dataset becomes an open task written into the run folder (`tasks/<id>.yaml`),
so the trials reload it by path like any task: resume, notebooks, the report and
`cellprompt evaluate` need nothing special, and the file can be shared as is.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cellprompt.errors import UsageError
from cellprompt.records.run import Limits, TrialSpec
from cellprompt.runs.open_task import DEFAULT_OBJECTIVE, open_task, write_task
from cellprompt.runs.plan import plan_trials
from cellprompt.runs.runner import create_run
from cellprompt.runs.store import RunStore, new_run_id

DEFAULT_JUDGE_SAMPLES = 3


def create_open_run(outputs_dir: Path, *, prompts: dict[str, str], datasets: list[str],
                    models: list[str], objective: str | None = None, replicates: int = 1,
                    limits: Limits | None = None, sandbox_backend: str = "auto",
                    base_url: str | None = None, judge: dict | None = None, command: str = "",
                    parallel: int = 1) -> tuple[RunStore, list[TrialSpec]]:
    """Resolve the datasets, write their open tasks into a new run folder, plan and create the run.

    `judge` (model, samples, base_url) is kept in the manifest so `--resume` judges the same way.
    Nothing is left behind when a dataset or a model cannot be used.
    """
    from cellprompt.datasets import resolve

    if not datasets:
        raise UsageError("missing --dataset: pass builtin:NAME, a .h5ad path or census:ID")
    unique = list(dict.fromkeys(datasets))
    for ref in unique:  # a one-line DatasetError now, before anything is written
        resolve(ref)
    run_id = new_run_id()
    folder = outputs_dir / run_id
    try:
        refs: list[str] = []
        for ref in unique:
            task = open_task(ref, objective,
                             max_code_executions=limits.max_code_executions if limits else None)
            refs.append(str(write_task(task, folder / "tasks" / f"{task.id}.yaml").resolve()))
        specs = plan_trials(prompts=prompts, tasks=refs, models=models, replicates=replicates,
                            limits=limits, sandbox_backend=sandbox_backend, base_url=base_url)
        config = {"open": True, "prompts": list(prompts), "datasets": unique, "tasks": refs,
                  "objective": (objective or "").strip() or DEFAULT_OBJECTIVE, "models": models,
                  "replicates": replicates, "limits": (limits or Limits()).model_dump(),
                  "parallel": parallel, "judge": judge}
        store = create_run(outputs_dir, specs, command=command, config=config, run_id=run_id)
    except BaseException:
        if folder.is_dir() and not (folder / "run.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return store, specs


def judge_open_run(store: RunStore, judge_model: str, *, samples: int = DEFAULT_JUDGE_SAMPLES,
                   base_url: str | None = None, progress: Callable[[int, int], None] | None = None,
                   warn: Callable[[str], None] | None = None):  # -> EvaluateSummary
    """Judge every trial not yet judged, figures included, with several samples for the spread."""
    from cellprompt.runs.evaluate import evaluate_run

    return evaluate_run(store, judge_model, samples, None, progress, base_url=base_url,
                        include_figures=None, warn=warn)
