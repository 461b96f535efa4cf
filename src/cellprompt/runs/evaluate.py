"""`cellprompt evaluate`: the LLM judge over every trial of a run folder not yet judged.

The orchestration around `grading.judge.judge_trial`: it reads the run store, loads each
trial's task (when it still loads), warns when the judge shares the agents' provider
family, and appends one `evaluations.jsonl` line per trial as each is judged, so an
interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from cellprompt.grading.judge import judge_trial, load_rubric, provider_family, same_family
from cellprompt.llm import make_model
from cellprompt.llm.base import ChatModel
from cellprompt.runs.store import RunStore
from cellprompt.tasks import Task, load_task

log = logging.getLogger(__name__)


class EvaluateSummary(BaseModel):
    judged: int = 0
    failed: int = 0
    disagreements: int = 0  # trials whose judge samples span more than DISAGREEMENT_POINTS
    skipped: int = 0
    cost_usd: float = 0.0
    warnings: list[str] = Field(default_factory=list)


def _load_task(ref: str, cache: dict[str, Task | None]) -> Task | None:
    if ref not in cache:
        try:
            cache[ref] = load_task(ref)
        except Exception:  # the judge still works from the trial's own first message
            log.debug("task %s did not load; judging from the trial alone", ref, exc_info=True)
            cache[ref] = None
    return cache[ref]


def evaluate_run(
    store: RunStore,
    judge_model_spec: str | ChatModel,
    samples: int = 1,
    rubric_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    base_url: str | None = None,
    show_system_prompt: bool = True,
    include_figures: bool | None = None,
    warn: Callable[[str], None] | None = None,
) -> EvaluateSummary:
    """Judge every trial of a run not yet judged successfully, appending to `evaluations.jsonl`."""
    rubric = load_rubric(rubric_file) if rubric_file else None
    if isinstance(judge_model_spec, str):
        model: ChatModel = make_model(judge_model_spec, base_url=base_url)
    else:
        model = judge_model_spec
    trials = store.trials()
    done = {tid for tid, ev in store.evaluations().items() if ev.ok}
    todo = [t for t in trials if t.trial_id not in done]
    summary = EvaluateSummary(skipped=len(trials) - len(todo))
    family = provider_family(model.spec, base_url)
    shared = same_family(model.spec, [t.spec.model for t in todo], judge_url=base_url,
                         agent_urls={t.spec.model: t.spec.base_url for t in todo})
    if shared:
        summary.warnings.append(
            f"judge {model.spec} is from the same provider family ({family}) as agent "
            f"model(s) {', '.join(shared)}: it may favour them; consider another judge"
        )
        if warn:
            warn(summary.warnings[-1])
    tasks: dict[str, Task | None] = {}
    for number, record in enumerate(todo, start=1):
        evaluation = judge_trial(
            record,
            _load_task(record.spec.task_ref, tasks),
            model,
            samples=samples,
            rubric=rubric,
            show_system_prompt=show_system_prompt,
            include_figures=include_figures,
            run_dir=store.path,
        )
        store.append_evaluation(evaluation)
        summary.disagreements += evaluation.disagreement
        summary.judged += evaluation.ok
        summary.failed += not evaluation.ok
        summary.cost_usd += evaluation.usage.cost_usd
        if progress:
            progress(number, len(todo))
    return summary
