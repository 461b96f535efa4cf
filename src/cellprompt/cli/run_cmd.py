"""`cellprompt run`: the matrix prompts × tasks × models × replicates, live progress, a summary."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellprompt.cli.console import ask, err, interactive, out
from cellprompt.config import get_settings
from cellprompt.errors import UsageError
from cellprompt.runs.plan import load_prompts
from cellprompt.runs.runner import RunProgress, create_run, load_specs, plan_trials, run
from cellprompt.runs.schema import Limits, TrialRecord
from cellprompt.runs.store import RunStore


def _ask_list(values: list[str] | None, option: str, question: str) -> list[str]:
    if values:
        return values
    if option == "--prompt" and interactive():
        out.print("Paste the system prompt (end with an empty line), or give a file or folder path.")
        first = input("> ")
        if Path(first).exists():
            return [first]
        lines = [first]
        while (line := input()) != "":
            lines.append(line)
        return ["\n".join(lines)]
    return [ask(None, option, question)]


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("pass {task.fields[pass_rate]:.0%}  ${task.fields[cost]:.4f}"),
                    TimeElapsedColumn(), console=err, transient=False)


def execute_run(store: RunStore, specs: list, parallel: int) -> RunProgress:
    """Run with a live bar; Ctrl-C keeps finished trials and says how to resume."""
    with progress_bar() as bar:
        done_before = {r.trial_id for r in store.trials()}
        already = sum(1 for s in specs if s.trial_id in done_before)
        bar_id = bar.add_task(store.run_id, total=len(specs), completed=already, pass_rate=0.0, cost=0.0)

        def on_trial(record: TrialRecord, progress: RunProgress) -> None:
            bar.update(bar_id, completed=progress.done, pass_rate=progress.pass_rate,
                       cost=progress.cost_usd)

        try:
            return run(specs, store, parallel=parallel, on_trial=on_trial)
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
        model: list[str] = typer.Option(None, "--model", "-m", help="provider:name, reference, replay:FILE"),
        replicates: int = typer.Option(1, "--replicates", "-n", min=1),
        max_code_executions: int | None = typer.Option(None, "--max-code-executions", min=1),
        max_turns: int | None = typer.Option(None, "--max-turns", min=1),
        max_cost: float | None = typer.Option(None, "--max-cost", help="USD per trial"),
        wall_time: float | None = typer.Option(None, "--wall-time", help="seconds per trial"),
        no_images: bool = typer.Option(False, "--no-images", help="Do not show figures to the model."),
        parallel: int = typer.Option(1, "--parallel", "-j", min=1),
        sandbox: str = typer.Option(None, "--sandbox", help="auto | bwrap | docker | local"),
        base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
        out_dir: Path | None = typer.Option(None, "--out", help="Folder of runs (default outputs/)."),
        resume: str | None = typer.Option(None, "--resume", help="Run id or folder to finish."),
    ) -> None:
        """Run prompts × tasks × models × replicates, each trial in a fresh sandbox."""
        settings = get_settings()
        outputs = out_dir or settings.outputs_dir
        if resume:
            if prompt or task or model:
                raise UsageError("--resume takes no --prompt/--task/--model: the run folder has its plan")
            store = RunStore.open(resume, outputs)
            specs = load_specs(store)
        else:
            prompts = load_prompts(_ask_list(prompt, "--prompt", "System prompt (text, file or folder)"))
            tasks = _ask_list(task, "--task", "Task id or file (see `cellprompt tasks list`)")
            if "all" in tasks:  # the whole built-in suite
                from cellprompt.tasks import builtin_tasks

                tasks = [t.id for t in builtin_tasks()] + [t for t in tasks if t != "all"]
            models = model or [ask(None, "--model", "Model", default="reference")]
            if max_code_executions is None and interactive() and not task:
                max_code_executions = int(ask(None, "--max-code-executions", "Max code attempts",
                                              default="10"))
            limits = Limits(max_code_executions=max_code_executions, max_turns=max_turns,
                            max_cost_usd=max_cost, wall_time_s=wall_time, send_images=not no_images)
            specs = plan_trials(prompts=prompts, tasks=tasks, models=models, replicates=replicates,
                                limits=limits, sandbox_backend=sandbox or settings.sandbox_backend,
                                base_url=base_url or settings.openai_base_url)
            config = {"prompts": list(prompts), "tasks": tasks, "models": models,
                      "replicates": replicates, "limits": limits.model_dump(), "parallel": parallel}
            store = create_run(outputs, specs, command=shlex.join(["cellprompt", *sys.argv[1:]]),
                               config=config)
        out.print(f"run [bold]{store.run_id}[/]: {len(specs)} trial(s) → {store.path}")
        execute_run(store, specs, parallel)
        out.print(summary_table(store))
        out.print(f"results: {store.path}")
