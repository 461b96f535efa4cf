"""The real `Evaluator`: trials through the runner (parallel, resumable) into a run folder, and the judge.

The run folder is the evolution's one store of trials (`run/`, see
`EvolutionFolder.run_store`), so every trial of an evolution can be opened as a
notebook, judged or put in a report like any other run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cellprompt.evolve.evaluator import Judge
from cellprompt.evolve.folder import text_id
from cellprompt.evolve.leaks import Fact, dataset_facts, grader_facts, truth_facts
from cellprompt.grading.judge_input import JudgedTask
from cellprompt.llm.base import ChatModel
from cellprompt.records.run import Evaluation, Limits, TrialRecord, TrialSpec
from cellprompt.runs.executors import Executor
from cellprompt.runs.store import RunStore
from cellprompt.tasks import Task, load_task


class RunnerEvaluator:
    """Runs (prompt × tasks × replicates) with the runner; trials already in the run folder are not re-run."""

    def __init__(
        self,
        *,
        model: str,
        store: RunStore,
        base_url: str | None = None,
        limits: Limits | None = None,
        sandbox_backend: str = "auto",
        parallel: int = 1,
        on_trial: Callable[[TrialRecord], None] | None = None,
        executor: Executor | None = None,
        dataset_seed: int | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.limits = limits
        self.sandbox_backend = sandbox_backend
        self.parallel = parallel
        self.on_trial = on_trial
        self.executor = executor  # None: the local thread pool; a RayExecutor spreads candidates
        self.store = store  # the runner appends every trial here itself
        self.dataset_seed = dataset_seed  # `evolve --fresh`: generated data drawn with this seed
        self._tasks: dict[str, Task] = {}

    def task(self, ref: str) -> Task:
        """The task as its trials run it: under `--fresh`, on its generated dataset drawn anew."""
        if ref not in self._tasks:
            from cellprompt.datasets.generate import is_generated, with_seed

            task = load_task(ref)
            if self.dataset_seed is not None and is_generated(task.dataset):
                task = task.model_copy(update={"dataset": with_seed(task.dataset, self.dataset_seed)})
            self._tasks[ref] = task
        return self._tasks[ref]

    def task_texts(self, task_ref: str) -> list[str]:
        task = self.task(task_ref)
        return [t for t in (task.objective, task.traps, task.rubric or "") if t.strip()]

    def task_facts(self, task_ref: str) -> list[Fact]:
        """A sealed task's id, the truth in its graders and the withheld truth of its sealed copy
        (made once and cached, as its trials make it); the dataset's identity for an open one."""
        task = self.task(task_ref)
        ids = [Fact((task.id,), "the id of a task")]
        if task.kind != "open":
            from cellprompt.tasks.materialise import materialise

            return ids + grader_facts(task.graders) + truth_facts(materialise(task).truth, task.id)
        from cellprompt.datasets import describe, resolve

        ds = resolve(task.dataset)
        return ids + dataset_facts(task.dataset, ds.name, describe(ds.path), ds.metadata)

    def plan(self, prompt: str, task_refs: list[str], replicates: int, *,
             first_replicate: int = 0) -> list[TrialSpec]:
        """The specs of (prompt × tasks × replicates), task-major, on the evolution's dataset seed."""
        from cellprompt.runs.runner import plan_trials

        specs = plan_trials(
            prompts={f"cand-{text_id(prompt)}": prompt},
            tasks=task_refs,
            models=[self.model],
            replicates=first_replicate + replicates,
            limits=self.limits,
            sandbox_backend=self.sandbox_backend,
            base_url=self.base_url,
            fresh=self.dataset_seed is not None,
        )
        # as `run --fresh` does for a run: one draw for the whole evolution (recorded in its config)
        return [s.model_copy(update={"dataset_seed": self.dataset_seed}) if s.dataset_seed is not None
                else s for s in specs if s.replicate >= first_replicate]

    def evaluate(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> list[TrialRecord]:
        from cellprompt.runs.runner import run

        specs = self.plan(prompt, task_refs, replicates, first_replicate=first_replicate)
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
    model: ChatModel, tasks: Callable[[str], JudgedTask | None], *, samples: int = 1,
    run_dir: Path | None = None,
) -> Judge:
    """A `Judge` for the trial bank: the LLM judge with the trial's own task (and its rubric)."""
    from cellprompt.grading.judge import judge_trial

    def judge(record: TrialRecord) -> Evaluation:
        # figures of open analyses need the run folder: the trial's artifacts live there
        return judge_trial(record, tasks(record.spec.task_ref), model, samples=samples, run_dir=run_dir)

    return judge
