"""The real `Evaluator`: trials through the runner (parallel, resumable) into a run folder, and the judge.

The run folder lives inside the evolution folder (`run/`), so every trial of an
evolution can be opened as a notebook or put in a report like any other run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cellprompt.evolve.evaluator import Judge
from cellprompt.evolve.folder import text_id
from cellprompt.evolve.leaks import Fact, dataset_facts, grader_facts
from cellprompt.llm.base import ChatModel
from cellprompt.records.run import Evaluation, Limits, TrialRecord
from cellprompt.runs.executors import Executor
from cellprompt.runs.store import RunStore
from cellprompt.tasks import Task, load_task


class RunnerEvaluator:
    """Runs (prompt × tasks × replicates) with the runner; trials already in the run folder are not re-run."""

    def __init__(
        self,
        *,
        model: str,
        run_dir: Path,
        base_url: str | None = None,
        limits: Limits | None = None,
        sandbox_backend: str = "auto",
        parallel: int = 1,
        on_trial: Callable[[TrialRecord], None] | None = None,
        executor: Executor | None = None,
    ) -> None:
        from cellprompt.runs.runner import create_run

        self.model = model
        self.base_url = base_url
        self.limits = limits
        self.sandbox_backend = sandbox_backend
        self.parallel = parallel
        self.on_trial = on_trial
        self.executor = executor  # None: the local thread pool; a RayExecutor spreads candidates
        if (run_dir / "run.json").exists():
            self.store = RunStore.open(run_dir)
        else:
            self.store = create_run(
                run_dir.parent,
                [],
                command="cellprompt evolve",
                run_id=run_dir.name,
                config={"evolve": True, "model": model},
            )
        self._tasks: dict[str, Task] = {}

    def task(self, ref: str) -> Task:
        if ref not in self._tasks:
            self._tasks[ref] = load_task(ref)
        return self._tasks[ref]

    def task_texts(self, task_ref: str) -> list[str]:
        task = self.task(task_ref)
        return [t for t in (task.objective, task.traps, task.rubric or "") if t.strip()]

    def task_facts(self, task_ref: str) -> list[Fact]:
        """Truth in the graders of a sealed task; the dataset's identity for an open one."""
        task = self.task(task_ref)
        if task.kind != "open":
            return grader_facts(task.graders)
        from cellprompt.datasets import describe, resolve

        ds = resolve(task.dataset)
        return dataset_facts(task.dataset, ds.name, describe(ds.path), ds.metadata)

    def evaluate(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> list[TrialRecord]:
        from cellprompt.runs.runner import plan_trials, run

        specs = plan_trials(
            prompts={f"cand-{text_id(prompt)}": prompt},
            tasks=task_refs,
            models=[self.model],
            replicates=first_replicate + replicates,
            limits=self.limits,
            sandbox_backend=self.sandbox_backend,
            base_url=self.base_url,
        )
        specs = [s for s in specs if s.replicate >= first_replicate]
        callback = (lambda record, _progress: self.on_trial(record)) if self.on_trial else None  # type: ignore[misc]
        # the bank asks again only for trials it lacks or that errored: an outage is retried, not reused
        progress = run(specs, self.store, parallel=self.parallel, executor=self.executor, on_trial=callback,
                       rerun_errors=True)
        by_id = {r.trial_id: r for r in progress.records}
        if any(s.trial_id not in by_id for s in specs):
            by_id.update({r.trial_id: r for r in self.store.trials()})
        # plan_trials orders prompt, model, task, replicate: task-major, as the Evaluator protocol says
        return [by_id[s.trial_id] for s in specs]


def make_judge(
    model: ChatModel, tasks: Callable[[str], Task], *, samples: int = 1, run_dir: Path | None = None
) -> Judge:
    """A `Judge` for the trial bank: the LLM judge with the trial's own task (and its rubric)."""
    from cellprompt.grading.judge import judge_trial

    def judge(record: TrialRecord) -> Evaluation:
        # figures of open analyses need the run folder: the trial's artifacts live there
        return judge_trial(record, tasks(record.spec.task_ref), model, samples=samples, run_dir=run_dir)

    return judge
