"""The public Python API: what the CLI does, callable from a notebook or a script.

`import cellprompt` exposes these names (lazily, so that importing the package stays cheap
for the sandbox and the dataset tools). The CLI's commands are thin shells over them:
a flag's default lives in one place, and a user who outgrows the CLI calls the same code.

    import cellprompt
    store = cellprompt.run(["pbmc68k-qc-mito"], models=["reference"])
    cellprompt.report([store.path], "report.html")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cellprompt.config import get_settings
from cellprompt.evolve.context import EvolveEvent
from cellprompt.evolve.folder import EvolutionFolder
from cellprompt.evolve.schema import EvolveConfig, EvolveSummary
from cellprompt.llm.base import ChatModel
from cellprompt.records.grades import GradeResult
from cellprompt.records.run import Limits, TrialRecord, TrialSpec
from cellprompt.runs.evaluate import EvaluateSummary
from cellprompt.runs.executors import Executor
from cellprompt.runs.runner import RunProgress
from cellprompt.runs.store import RunStore
from cellprompt.tasks.spec import Task

__all__ = ["evaluate", "evolve_prompt", "grade", "load_task", "plan", "report", "resume_evolution", "run",
           "start_run"]


def load_task(ref: str | Path) -> Task:
    """A task by built-in id, task file (YAML or scBench JSON) or folder; its truth stays sealed."""
    from cellprompt.tasks import load_task as load

    return load(str(ref))


def grade(task: Task | str, answer: Mapping[str, Any] | None, *,
          workspace: Path | None = None) -> list[GradeResult]:
    """Every grader of `task` on one answer (and the files in `workspace`), against its truth."""
    from cellprompt.tasks import grade_task, materialise

    task = load_task(task) if isinstance(task, str) else task
    mt = materialise(task)
    return grade_task(task, dict(answer) if answer is not None else None, truth=mt.truth,
                      workspace=workspace, mt=mt)


def plan(tasks: Sequence[str], *, prompts: Sequence[str] = ("baseline",),
         models: Sequence[str] = ("reference",), replicates: int = 1, limits: Limits | None = None,
         sandbox: str | None = None, base_url: str | None = None,
         model_base_urls: Mapping[str, str] | None = None, fresh: bool = False) -> list[TrialSpec]:
    """The trials of a run: prompts × tasks (`all` is the built-in suite) × models × replicates.

    `prompts`: built-in names (`baseline`), files, folders or texts. `model_base_urls`: a server
    per model (an experiment file's), over `base_url`. `fresh`: generated datasets get one new
    seed for the whole run, recorded in every trial.
    """
    from cellprompt.runs.plan import load_prompts, plan_trials

    settings = get_settings()
    texts = load_prompts(list(prompts))
    backend = sandbox or settings.sandbox_backend
    agent_url = base_url or settings.openai_base_url
    urls = dict(model_base_urls or {})
    groups = [[m] for m in models] if urls else [list(models)]  # one plan per server
    specs = [spec for group in groups for spec in plan_trials(
        prompts=texts, tasks=list(tasks), models=group, replicates=replicates, limits=limits,
        sandbox_backend=backend, base_url=urls.get(group[0], agent_url), fresh=fresh)]
    seed = next((s.dataset_seed for s in specs if s.dataset_seed is not None), None)
    if seed is None:
        return specs
    return [s.model_copy(update={"dataset_seed": seed}) if s.dataset_seed is not None else s
            for s in specs]


def start_run(specs: list[TrialSpec], *, out: Path | str | None = None,
              judge: Mapping[str, object] | None = None, command: str = "",
              config: Mapping[str, Any] | None = None,
              url_sources: Mapping[str, str] | None = None) -> RunStore:
    """Check the plan (models answer, datasets readable: one line, nothing written, when not),
    then create the run folder with its manifest and `specs.json`; no trial runs yet.

    `config`: what the run records beyond what its specs say (replicates, parallelism, ...).
    `url_sources`: where a model's base URL came from, for the preflight's message.
    """
    from cellprompt.runs.preflight import preflight
    from cellprompt.runs.runner import create_run

    preflight(specs, judge=judge, url_sources=url_sources)
    seeds = [s.dataset_seed for s in specs if s.dataset_seed is not None]
    recorded: dict[str, Any] = {
        "prompts": list(dict.fromkeys(s.prompt_id for s in specs)),
        "tasks": list(dict.fromkeys(s.task_id for s in specs)),
        "models": list(dict.fromkeys(s.model for s in specs)),
        "replicates": len({s.replicate for s in specs}), "judge": judge, "fresh": bool(seeds),
        "dataset_seed": seeds[0] if seeds else None}
    if specs:
        recorded["limits"] = specs[0].limits.model_dump()
    outputs = Path(out) if out is not None else get_settings().outputs_dir
    return create_run(outputs, specs, command=command, config={**recorded, **(config or {})})


def run(tasks: Sequence[str] = (), *, specs: list[TrialSpec] | None = None,
        prompts: Sequence[str] = ("baseline",),
        models: Sequence[str] = ("reference",), replicates: int = 1, limits: Limits | None = None,
        parallel: int = 1, sandbox: str | None = None, base_url: str | None = None,
        model_base_urls: Mapping[str, str] | None = None, fresh: bool = False,
        out: Path | str | None = None, executor: str | None = None, ray_address: str | None = None,
        judge: Mapping[str, object] | None = None,
        on_trial: Callable[[TrialRecord, RunProgress], None] | None = None) -> RunStore:
    """Plan, check and run a benchmark; the run's store (`store.trials()`, `store.path`).

    `tasks`: task ids or files (`all`: the built-in suite), or `specs` planned with `plan`.
    Every trial's record is written as soon as it ends; `executor`: `local` (threads, the
    default) or `ray` at `ray_address`.
    """
    from cellprompt.runs.executors import make_executor, remember_executor, resolve_executor
    from cellprompt.runs.runner import run as run_trials

    if specs is None:
        specs = plan(tasks, prompts=prompts, models=models, replicates=replicates, limits=limits,
                     sandbox=sandbox, base_url=base_url, model_base_urls=model_base_urls, fresh=fresh)
    name, address = resolve_executor(executor, ray_address)
    chosen = make_executor(name, parallel=parallel, address=address)
    store = start_run(specs, out=out, judge=judge,
                      config={"parallel": parallel, "model_base_urls": dict(model_base_urls or {})})
    remember_executor(store, name, address)
    run_trials(specs, store, parallel=parallel, executor=chosen, on_trial=on_trial)
    return store


def evaluate(run: RunStore | Path | str, judge_model: str | ChatModel | None = None, *,
             samples: int = 1, rubric_file: Path | None = None, base_url: str | None = None,
             out: Path | str | None = None, show_system_prompt: bool = True,
             include_figures: bool | None = None,
             progress: Callable[[int, int], None] | None = None,
             warn: Callable[[str], None] | None = None) -> EvaluateSummary:
    """Judge every trial of a run not judged yet (an LLM judge), into its `evaluations.jsonl`.

    `judge_model`: by default one of another family than the run's agents. The judge is
    checked before any trial is sent to it, so a dead server fails in seconds.
    """
    from cellprompt.grading.judge import default_judge
    from cellprompt.runs.evaluate import evaluate_run
    from cellprompt.runs.preflight import ModelTarget, check_models

    store = _store(run, out)
    if judge_model is None:
        judge_model = default_judge(sorted({t.spec.model for t in store.trials()}))
    if isinstance(judge_model, str):
        check_models([ModelTarget(judge_model, base_url, model_source="--judge-model")])
    return evaluate_run(store, judge_model, samples, rubric_file, progress, base_url=base_url,
                        show_system_prompt=show_system_prompt, include_figures=include_figures,
                        warn=warn)


def report(runs: Sequence[RunStore | Path | str], path: Path | str = "report.html", *,
           title: str | None = None, out: Path | str | None = None) -> Path:
    """One self-contained HTML report of one or more runs (ids under `out`, or folders)."""
    from cellprompt.export.report import build_report

    return build_report([_store(r, out) for r in runs], Path(path), title=title)


def evolve_prompt(config: EvolveConfig, *, out: Path | str | None = None, executor: Executor | None = None,
           on_event: Callable[[EvolveEvent], None] | None = None) -> EvolveSummary:
    """Evolve `config.seed_prompt` on its training tasks within its budget, choose on its
    validation tasks, and compare seed and best once on its held-out test tasks."""
    from cellprompt.evolve import start_evolution

    folder = start_evolution(config, Path(out) if out is not None else get_settings().outputs_dir)
    return resume_evolution(folder, executor=executor, on_event=on_event)


def resume_evolution(folder: EvolutionFolder, *, executor: Executor | None = None,
                     on_event: Callable[[EvolveEvent], None] | None = None) -> EvolveSummary:
    """Run (or finish) the evolution in `folder` with the models its config names; the
    models (agent, reflection, judge) and every task's dataset are checked before any trial."""
    from cellprompt.evolve import run_evolution
    from cellprompt.evolve.runner_evaluator import RunnerEvaluator, make_judge
    from cellprompt.llm import make_model
    from cellprompt.runs.preflight import ModelTarget, check_models, preflight

    config = folder.config()
    evaluator = RunnerEvaluator(model=config.model, store=folder.run_store(),
                                dataset_seed=config.dataset_seed, base_url=config.base_url,
                                sandbox_backend=config.sandbox_backend, parallel=config.parallel,
                                executor=executor)
    tasks = list(dict.fromkeys([*config.train_tasks, *config.val_tasks, *config.test_tasks]))
    judged = {"model": config.judge_model, "base_url": config.judge_base_url} if config.judge_model else None
    preflight(evaluator.plan(config.seed_prompt, tasks, 1), judge=judged)
    check_models([ModelTarget(config.reflection_model, config.base_url, model_source="--reflection-model")])
    reflection = make_model(config.reflection_model, base_url=config.base_url)
    judge = (make_judge(make_model(config.judge_model, base_url=config.judge_base_url),
                        evaluator.task, samples=config.judge_samples, run_dir=folder.run_dir)
             if config.judge_model else None)
    return run_evolution(folder, evaluator, reflection, judge=judge, on_event=on_event)


def _store(run: RunStore | Path | str, out: Path | str | None) -> RunStore:
    if isinstance(run, RunStore):
        return run
    return RunStore.open(str(run), Path(out) if out is not None else get_settings().outputs_dir)
