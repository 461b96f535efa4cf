"""`cellprompt run`: prompts × tasks (or datasets, for open analyses) × models × replicates.

Live progress, a summary; open analyses are then judged and reported.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellprompt.cli.ask_open import ask_datasets, ask_max_code_executions, ask_prompts
from cellprompt.cli.console import ask, err, out
from cellprompt.config import get_settings
from cellprompt.errors import UsageError
from cellprompt.runs.executors import Executor, make_executor
from cellprompt.runs.plan import load_prompts
from cellprompt.runs.runner import RunProgress, create_run, load_specs, plan_trials, run
from cellprompt.runs.schema import Limits, TrialRecord
from cellprompt.runs.store import RunStore


def progress_bar(measure: str = "pass") -> Progress:
    """`measure`: "pass" (graded tasks) or "reported" (open analyses, judged afterwards)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(measure + " {task.fields[pass_rate]:.0%}  ${task.fields[cost]:.4f}"),
                    TimeElapsedColumn(), console=err, transient=False)


def execute_run(store: RunStore, specs: list, parallel: int, executor: Executor | None = None) -> RunProgress:
    """Run with a live bar; Ctrl-C keeps finished trials and says how to resume."""
    is_open = any(s.task_kind == "open" for s in specs)
    with progress_bar("reported" if is_open else "pass") as bar:
        done_before = {r.trial_id for r in store.trials()}
        already = sum(1 for s in specs if s.trial_id in done_before)
        bar_id = bar.add_task(store.run_id, total=len(specs), completed=already, pass_rate=0.0, cost=0.0)

        def on_trial(record: TrialRecord, progress: RunProgress) -> None:
            rate = progress.pass_rate
            if is_open:  # no pass/fail before the judge: the share of trials that wrote a report
                rate = sum(1 for r in progress.records if r.report) / max(1, len(progress.records))
            bar.update(bar_id, completed=progress.done, pass_rate=rate, cost=progress.cost_usd)

        try:
            return run(specs, store, parallel=parallel, executor=executor, on_trial=on_trial)
        except KeyboardInterrupt:
            bar.stop()
            kept = len(store.trials())
            err.print(f"[yellow]interrupted:[/] {kept} finished trial(s) kept in {store.path}; "
                      f"resume with: cellprompt run --resume {store.run_id}")
            raise typer.Exit(130) from None


def summary_table(store: RunStore) -> Table:
    from cellprompt.grading.stats import stats_for_stores

    stats = stats_for_stores([store])
    table = Table(title=f"run {store.run_id}")
    for col in ("prompt", "model", "trials", "pass rate", "mean score (95% CI)", "mean cost", "mean time"):
        table.add_column(col, justify="right" if col not in ("prompt", "model") else "left")
    for g in stats.by_prompt_model:
        table.add_row(g.prompt_id, g.model, str(g.trials), f"{g.pass_rate:.0%}",
                      f"{g.score_mean:.2f} ({g.score_ci_low:.2f}–{g.score_ci_high:.2f})",
                      f"${g.cost_usd / g.trials:.4f}", f"{g.wall_s_mean:.1f} s")
    return table


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Prompt text, file, or folder."),
        task: list[str] = typer.Option(None, "--task", "-t", help="Task id, task file, or `all`."),
        dataset: list[str] = typer.Option(
            None, "--dataset", "-d", help="Open analysis of a dataset: builtin:NAME, .h5ad path, census:ID."
        ),
        objective: str | None = typer.Option(
            None, "--objective", help="What the open analysis should do (default: a complete analysis)."
        ),
        model: list[str] = typer.Option(
            None, "--model", "-m", help="provider:name, reference, replay:FILE, agent:COMMAND (docs/mcp.md)"
        ),
        replicates: int = typer.Option(1, "--replicates", "-n", min=1),
        fresh: bool = typer.Option(False, "--fresh",
                                   help="Draw generated datasets (gen:…) with a new seed for this run."),
        max_code_executions: int | None = typer.Option(None, "--max-code-executions", min=1),
        max_turns: int | None = typer.Option(None, "--max-turns", min=1),
        max_cost: float | None = typer.Option(None, "--max-cost", help="USD per trial"),
        wall_time: float | None = typer.Option(None, "--wall-time", help="seconds per trial"),
        no_images: bool = typer.Option(False, "--no-images", help="Do not show figures to the model."),
        parallel: int = typer.Option(1, "--parallel", "-j", min=1),
        sandbox: str = typer.Option(None, "--sandbox", help="auto | bwrap | docker | local"),
        base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
        judge_model: str | None = typer.Option(
            None, "--judge-model", help="Judge of open analyses (default: another family than the agent)."
        ),
        judge_samples: int = typer.Option(3, "--judge-samples", min=1, help="Judge samples per trial."),
        judge_base_url: str | None = typer.Option(None, "--judge-base-url", help="Judge server URL."),
        no_judge: bool = typer.Option(False, "--no-judge", help="Do not judge open analyses now."),
        out_dir: Path | None = typer.Option(None, "--out", help="Folder of runs (default outputs/)."),
        resume: str | None = typer.Option(None, "--resume", help="Run id or folder to finish."),
        executor_name: str = typer.Option("local", "--executor", help="local (threads) | ray (a cluster)."),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="With --executor ray: auto or ray://HOST:PORT (default: local)."
        ),
    ) -> None:
        """Run prompts × tasks (or datasets) × models × replicates, each trial in a fresh sandbox.

        With --dataset (or no task on a terminal): an open analysis, ended by a report, judged 0-100.
        """
        settings = get_settings()
        outputs = out_dir or settings.outputs_dir
        judge_cfg: dict | None = None
        executor = make_executor(executor_name, parallel=parallel, address=ray_address)
        if resume:
            if prompt or task or model or dataset:
                raise UsageError("--resume takes no --prompt/--task/--dataset/--model: the run folder "
                                 "has its plan")
            store = RunStore.open(resume, outputs)
            specs = load_specs(store)
            judge_cfg = store.manifest().config.get("judge")
        else:
            if task and dataset:
                raise UsageError("pass --task (a task run) or --dataset (an open analysis), not both")
            is_open = bool(dataset) or not task
            prompts = load_prompts(ask_prompts(prompt))
            datasets = ask_datasets(dataset) if is_open else []
            tasks = [] if is_open else list(task)
            if "all" in tasks:  # the whole built-in suite
                from cellprompt.tasks import builtin_tasks

                tasks = [t.id for t in builtin_tasks()] + [t for t in tasks if t != "all"]
            if objective and not is_open:
                raise UsageError("--objective is for open analyses (--dataset); a task has its own")
            models = model or [ask(None, "--model", "Model", default="reference")]
            if is_open:
                from cellprompt.runs.open_task import OPEN_LIMITS

                max_code_executions = ask_max_code_executions(
                    max_code_executions, OPEN_LIMITS.max_code_executions)
            limits = Limits(max_code_executions=max_code_executions, max_turns=max_turns,
                            max_cost_usd=max_cost, wall_time_s=wall_time, send_images=not no_images)
            backend = sandbox or settings.sandbox_backend
            agent_url = base_url or settings.openai_base_url
            command = shlex.join(["cellprompt", *sys.argv[1:]])
            if is_open:
                from cellprompt.runs.open_run import create_open_run

                judge_cfg = None if no_judge else choose_judge(judge_model, models, judge_samples,
                                                               judge_base_url)
                store, specs = create_open_run(
                    outputs, prompts=prompts, datasets=datasets, models=models, objective=objective,
                    replicates=replicates, limits=limits, sandbox_backend=backend, base_url=agent_url,
                    judge=judge_cfg, command=command, parallel=parallel)
            else:
                specs = plan_trials(prompts=prompts, tasks=tasks, models=models, replicates=replicates,
                                    limits=limits, sandbox_backend=backend, base_url=agent_url,
                                    fresh=fresh)
                if any(s.task_kind == "open" for s in specs) and not no_judge:  # open task files
                    judge_cfg = choose_judge(judge_model, models, judge_samples, judge_base_url)
                config = {"prompts": list(prompts), "tasks": tasks, "models": models,
                          "replicates": replicates, "limits": limits.model_dump(), "parallel": parallel,
                          "judge": judge_cfg, "fresh": fresh,
                          "dataset_seed": next((s.dataset_seed for s in specs
                                                if s.dataset_seed is not None), None)}
                store = create_run(outputs, specs, command=command, config=config)
        out.print(f"run [bold]{store.run_id}[/]: {len(specs)} trial(s) → {store.path}")
        execute_run(store, specs, parallel, executor)
        if any(s.task_kind == "open" for s in specs):
            from cellprompt.cli.open_results import finish_open_run

            finish_open_run(store, judge_cfg if not no_judge else None)
            return
        out.print(summary_table(store))
        out.print(f"results: {store.path}")


def choose_judge(explicit: str | None, models: list[str], samples: int,
                 base_url: str | None) -> dict | None:
    """The judge of an open run, checked before any trial runs: another family than the agents by
    default; a warning when it shares one; none (with the fix) when the default has no API key."""
    from cellprompt.errors import MissingAPIKeyError
    from cellprompt.grading.judge import default_judge, provider_family, same_family
    from cellprompt.llm import make_model

    spec = explicit or default_judge(models)
    try:
        make_model(spec, base_url=base_url)
    except MissingAPIKeyError as exc:
        if explicit:
            raise
        err.print(f"[yellow]warning:[/] the default judge {spec} cannot be used ({exc}); trials will "
                  "not be judged: pass --judge-model, or run `cellprompt evaluate RUN` later")
        return None
    shared = same_family(spec, models)
    if shared:
        err.print(f"[yellow]warning:[/] judge {spec} is from the same family "
                  f"({provider_family(spec)}) as agent model(s) {', '.join(shared)}: it may favour "
                  "them; pass --judge-model from another family")
    return {"model": spec, "samples": samples, "base_url": base_url}
