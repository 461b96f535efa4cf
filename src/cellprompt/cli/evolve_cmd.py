"""`cellprompt evolve`: evolve a system prompt on training tasks, select on validation, report on test."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellprompt.cli.console import ask, err, money, out
from cellprompt.errors import UsageError
from cellprompt.runs.executors import Executor, make_executor, remember_executor, resolve_executor

if TYPE_CHECKING:
    from cellprompt.evolve.folder import EvolutionFolder


UNPRICED = 10**6  # a placeholder budget until the iterations are priced


def _split(values: list[str] | None) -> list[str]:
    """Repeated options or comma-separated lists, as people type them."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _tasks(values: list[str] | None, option: str, question: str, *, required: bool) -> list[str]:
    tasks = _split(values)
    if tasks or not required:
        return tasks
    return _split([ask(None, option, question)])


def register(app: typer.Typer) -> None:
    @app.command("evolve")
    def evolve_command(
        objective: str | None = typer.Option(None, "--objective", help="What the prompt is for."),
        prompt: Path | None = typer.Option(None, "--prompt", "-p", help="File holding the seed prompt."),
        task: list[str] = typer.Option(None, "--task", "-t", help="Training task id or file (repeatable)."),
        dataset: list[str] = typer.Option(
            None, "--dataset", "-d", help="Open analysis on this dataset, judged (instead of --task)."
        ),
        val_dataset: list[str] = typer.Option(None, "--val-dataset", help="Held-out validation dataset."),
        test_dataset: list[str] = typer.Option(None, "--test-dataset", help="Held-out test dataset."),
        no_test: bool = typer.Option(False, "--no-test", help="Open evolution: skip the final test."),
        iterations: int | None = typer.Option(
            None, "--iterations", min=1, help="Rewrites to make (sets the budget if --budget is not given)."
        ),
        judge_samples: int = typer.Option(1, "--judge-samples", min=1, help="Judge samples per trial."),
        judge_base_url: str | None = typer.Option(None, "--judge-base-url", help="Judge server URL."),
        val_task: list[str] = typer.Option(
            None, "--val-task", help="Validation task (selection uses these)."
        ),
        test_task: list[str] = typer.Option(None, "--test-task", help="Held-out task scored at the end."),
        model: str | None = typer.Option(None, "--model", "-m", help="Agent model, provider:name."),
        reflection_model: str | None = typer.Option(None, "--reflection-model", help="Model that rewrites."),
        strategy: str | None = typer.Option(None, "--strategy", help="iterative | gepa"),
        budget: int | None = typer.Option(
            None, "--budget", min=1, help="Total trials, test scoring included."
        ),
        replicates: int = typer.Option(1, "--replicates", "-n", min=1),
        judge_model: str | None = typer.Option(None, "--judge-model", help="Blend an LLM judge into scores."),
        judge_weight: float = typer.Option(0.3, "--judge-weight", min=0.0, max=1.0),
        max_words: int | None = typer.Option(None, "--max-words", help="Length budget of a prompt."),
        max_cost: float | None = typer.Option(None, "--max-cost", help="Stop proposing past this many USD."),
        parallel: int = typer.Option(1, "--parallel", "-j", min=1),
        sandbox: str | None = typer.Option(None, "--sandbox", help="auto | bwrap | docker | local"),
        base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
        seed: int = typer.Option(0, "--seed"),
        fresh: bool = typer.Option(False, "--fresh", help="Draw generated datasets (gen:…) with a new "
                                   "seed for this evolution (recorded in evolve.json)."),
        out_dir: Path | None = typer.Option(None, "--out", help="Folder of outputs (default outputs/)."),
        resume: str | None = typer.Option(None, "--resume", help="Evolution id or folder to continue."),
        executor_name: str | None = typer.Option(
            None, "--executor", help="local (threads) | ray (a cluster); default: the `executor` setting."),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="With --executor ray: auto or ray://HOST:PORT "
            "(default: the `ray_address` setting, else a local cluster)."
        ),
    ) -> None:
        """Evolve a system prompt (iterative or GEPA) with honest train / validation / test splits."""
        from cellprompt.config import get_settings
        from cellprompt.evolve import EvolutionFolder, EvolveConfig, new_evolution_id, start_evolution
        from cellprompt.evolve.folder import default_max_words

        settings = get_settings()
        outputs = out_dir or settings.outputs_dir
        used = None
        if resume:
            if objective or prompt or task or model or dataset or fresh:
                raise UsageError("--resume takes no --objective/--prompt/--task/--dataset/--model/--fresh: "
                                 "the folder has them")
            folder = EvolutionFolder.open(resume, outputs)
            used = folder.run_store().manifest().config.get("executor")
        # a resumed evolution goes back to the cluster it ran on unless the flags say otherwise
        executor_name, ray_address = resolve_executor(executor_name, ray_address, used)
        executor = make_executor(executor_name, parallel=parallel, address=ray_address)
        if dataset and not resume:
            if fresh:
                raise UsageError("--fresh is for --task evolutions on generated data (gen:…); with "
                                 "--dataset pass the gen: dataset with its seed= instead")
            if task or val_task or test_task:
                raise UsageError("pass --dataset (an open evolution, judged) or --task, not both")
            folder = _start_open(
                outputs, objective=ask(objective, "--objective", "What should the analysis achieve"),
                prompt=prompt, datasets=_split(dataset), val=_split(val_dataset), test=_split(test_dataset),
                no_test=no_test, model=model, reflection_model=reflection_model, judge_model=judge_model,
                judge_samples=judge_samples, judge_base_url=judge_base_url, strategy=strategy,
                budget=budget, iterations=iterations, replicates=replicates, max_words=max_words,
                max_cost=max_cost, seed=seed, base_url=base_url or settings.openai_base_url,
                sandbox=sandbox or settings.sandbox_backend, parallel=parallel)
        elif not resume:
            objective = ask(objective, "--objective", "What should the prompt achieve")
            prompt_path = Path(ask(str(prompt) if prompt else None, "--prompt", "Seed prompt file"))
            if not prompt_path.is_file():
                raise UsageError(f"prompt file {prompt_path} does not exist: pass an existing --prompt file")
            seed_prompt = prompt_path.read_text(encoding="utf-8")
            train = _tasks(task, "--task", "Training task ids (comma-separated)", required=True)
            val = _tasks(val_task, "--val-task", "", required=False)
            test = _tasks(test_task, "--test-task", "", required=False)
            model = ask(model, "--model", "Agent model (provider:name)")
            reflection_model = ask(
                reflection_model,
                "--reflection-model",
                "Reflection model (provider:name)",
                default=model if model not in ("reference",) else None,
            )
            from cellprompt.evolve import STRATEGIES

            strategy = ask(strategy, "--strategy", "Strategy", choices=STRATEGIES.names(),
                           default="iterative")
            if not budget and not iterations:
                budget = int(ask(None, "--budget", "Budget in trials"))
            try:
                config = EvolveConfig(
                    evolution_id=new_evolution_id(),
                    objective=objective,
                    seed_prompt=seed_prompt,
                    train_tasks=train,
                    val_tasks=val,
                    test_tasks=test,
                    model=model,
                    reflection_model=reflection_model,
                    strategy=strategy,
                    budget_trials=budget or UNPRICED,  # --iterations alone: priced below
                    replicates=replicates,
                    max_prompt_words=max_words or default_max_words(seed_prompt),
                    judge_model=judge_model,
                    judge_weight=judge_weight if judge_model else 0.0,
                    judge_samples=judge_samples,
                    judge_base_url=judge_base_url,
                    max_proposals=iterations,
                    max_cost_usd=max_cost,
                    seed=seed,
                    dataset_seed=fresh_seed([*train, *val, *test]) if fresh else None,
                    base_url=base_url or settings.openai_base_url,
                    sandbox_backend=sandbox or settings.sandbox_backend,
                    parallel=parallel,
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                raise UsageError(f"invalid {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
            if not budget and iterations:
                from cellprompt.evolve.budget import budget_for_iterations

                priced = budget_for_iterations(config, iterations)
                config = config.model_copy(update={"budget_trials": priced})
            folder = start_evolution(config, outputs)
        remember_executor(folder.run_store(), executor_name, ray_address)
        _run(folder, executor)


def fresh_seed(tasks: list[str]) -> int:
    """`--fresh`: one new dataset seed for the whole evolution, drawn as `run --fresh` draws it; a
    usage error when no task is on generated data (the flag would change nothing)."""
    from cellprompt.datasets.generate import is_generated
    from cellprompt.runs.plan import fresh_dataset_seed
    from cellprompt.tasks import load_task

    if not any(is_generated(load_task(t).dataset) for t in dict.fromkeys(tasks)):
        raise UsageError("--fresh redraws generated datasets (gen:…), and none of these tasks uses one: "
                         "drop --fresh")
    return fresh_dataset_seed()


def _start_open(outputs: Path, *, objective: str, prompt: Path | None, datasets: list[str], val: list[str],
                test: list[str], no_test: bool, model: str | None, reflection_model: str | None,
                judge_model: str | None, judge_samples: int, judge_base_url: str | None,
                strategy: str | None, budget: int | None, iterations: int | None, replicates: int,
                max_words: int | None, max_cost: float | None, seed: int, base_url: str | None,
                sandbox: str, parallel: int) -> EvolutionFolder:
    """An open evolution: datasets, the judge's grade as fitness, held-out validation and test."""
    from cellprompt.errors import MissingAPIKeyError
    from cellprompt.evolve import new_evolution_id
    from cellprompt.evolve.folder import default_max_words
    from cellprompt.evolve.open_setup import start_open_evolution
    from cellprompt.grading.judge import default_judge, provider_family, same_family
    from cellprompt.llm import make_model

    prompt_path = Path(ask(str(prompt) if prompt else None, "--prompt", "Seed prompt file"))
    if not prompt_path.is_file():
        raise UsageError(f"prompt file {prompt_path} does not exist: pass an existing --prompt file")
    seed_prompt = prompt_path.read_text(encoding="utf-8")
    model = ask(model, "--model", "Agent model (provider:name)")
    reflection_model = ask(reflection_model, "--reflection-model", "Reflection model (provider:name)",
                           default=model if model != "reference" else None)
    if budget is None and iterations is None:
        iterations = int(ask(None, "--iterations", "Number of rewrites (iterations)", default="5"))
    judge = judge_model or default_judge([model])
    try:
        make_model(judge, base_url=judge_base_url)
    except MissingAPIKeyError as exc:
        if judge_model:
            raise
        raise UsageError(f"the default judge {judge} cannot be used ({exc}): pass --judge-model") from None
    if same_family(judge, [model], judge_url=judge_base_url, agent_urls={model: base_url}):
        err.print(f"[yellow]warning:[/] judge {judge} is from the same family ({provider_family(judge)}) "
                  f"as the agent {model}: it may favour it; pass --judge-model from another family")
    try:
        folder, notes = start_open_evolution(
            outputs, evolution_id=new_evolution_id(), objective=objective, datasets=datasets,
            val_datasets=val, test_datasets=test, test=not no_test, budget=budget, iterations=iterations,
            seed_prompt=seed_prompt, model=model, reflection_model=reflection_model, judge_model=judge,
            judge_samples=judge_samples, judge_base_url=judge_base_url, strategy=strategy or "iterative",
            replicates=replicates, max_prompt_words=max_words or default_max_words(seed_prompt),
            max_cost_usd=max_cost, seed=seed, base_url=base_url, sandbox_backend=sandbox,
            parallel=parallel)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"invalid {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    return folder


def _run(folder: EvolutionFolder, executor: Executor | None = None) -> None:
    from cellprompt.api import resume_evolution
    from cellprompt.evolve import EvolveEvent, plan_budget

    config = folder.config()
    plan = plan_budget(config)
    out.print(
        f"evolution [bold]{config.evolution_id}[/] ({config.strategy}): budget {config.budget_trials} "
        f"trials, up to {plan.proposals} proposal(s) → {folder.path}"
    )
    if config.dataset_seed is not None:
        out.print(f"generated datasets drawn with seed {config.dataset_seed} (--fresh)", highlight=False)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best val {task.fields[best]}"),
        TimeElapsedColumn(),
        console=err,
    )

    with bar:
        bar_id = bar.add_task("trials", total=config.budget_trials, best="–")

        def on_event(event: EvolveEvent) -> None:
            best = f"{event.best_val:.3f}" if event.best_val is not None else "–"
            bar.update(bar_id, completed=event.trials_used, best=best)

        try:
            summary = resume_evolution(folder, executor=executor, on_event=on_event)
        except KeyboardInterrupt:
            bar.stop()
            err.print(
                f"[yellow]interrupted:[/] finished trials kept in {folder.path}; resume with: "
                f"cellprompt evolve --resume {config.evolution_id}"
            )
            raise typer.Exit(130) from None
    table = Table(title=f"evolution {summary.evolution_id}")
    for col in ("prompt", "validation", "test"):
        table.add_column(col, justify="left" if col == "prompt" else "right")
    test = summary.test
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    table.add_row(f"seed {summary.seed_id}", fmt(summary.seed_val), fmt(test.seed.mean if test else None))
    table.add_row(f"best {summary.best_id}", fmt(summary.best_val), fmt(test.best.mean if test else None))
    out.print(table)
    if test is not None and test.delta is not None:
        se = f" ± {test.delta_se:.3f}" if test.delta_se is not None else ""
        out.print(f"test: best − seed = {test.delta:+.3f}{se} over {len(test.tasks)} held-out task(s)")
    elif test is None:
        out.print("[yellow]no --test-task given: the improvement was not measured on held-out tasks[/]")
    for warning in summary.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if summary.stop_reason:
        out.print(f"stopped: {summary.stop_reason}", highlight=False)
    out.print(
        f"{summary.candidates} candidate(s), {summary.cost.trials} trial(s), "
        f"{money(summary.cost.total_cost_usd, summary.cost.cost_unknown)}; best prompt: "
        f"{folder.path / 'best_prompt.txt'}"
    )
    from cellprompt.evolve.report import write_report

    out.print(f"report: {write_report(folder)}", highlight=False)
