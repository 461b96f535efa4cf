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

from cellprompt import api
from cellprompt.cli.ask_open import ask_datasets, ask_max_code_executions, ask_prompts
from cellprompt.cli.console import ask, err, money, out, with_ci
from cellprompt.config import get_settings
from cellprompt.errors import UsageError
from cellprompt.records.run import Limits, TrialRecord
from cellprompt.runs.executors import Executor, make_executor, remember_executor, resolve_executor
from cellprompt.runs.experiment import DEFAULT_FILE, Experiment, load_experiment
from cellprompt.runs.plan import load_prompts
from cellprompt.runs.preflight import ModelTarget, check_models, judge_target, preflight
from cellprompt.runs.runner import RunProgress, load_specs, run
from cellprompt.runs.store import RunStore


def progress_bar(measure: str = "pass") -> Progress:
    """`measure`: "pass" (graded tasks) or "reported" (open analyses, judged afterwards)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(measure + " {task.fields[pass_rate]:.0%}  {task.fields[cost]}"),
                    TimeElapsedColumn(), console=err, transient=False)


def execute_run(store: RunStore, specs: list, parallel: int, executor: Executor | None = None,
                *, retry_errors: bool = False) -> RunProgress:
    """Run with a live bar; Ctrl-C keeps finished trials and says how to resume.

    `retry_errors`: errored trials of a resumed run run again (their new record replaces the old).
    """
    is_open = any(s.task_kind == "open" for s in specs)
    with progress_bar("reported" if is_open else "pass") as bar:
        done_before = {r.trial_id for r in store.trials() if not (retry_errors and r.status == "error")}
        already = sum(1 for s in specs if s.trial_id in done_before)
        bar_id = bar.add_task(store.run_id, total=len(specs), completed=already, pass_rate=0.0,
                              cost=money(0.0))

        def on_trial(record: TrialRecord, progress: RunProgress) -> None:
            rate = progress.pass_rate
            if is_open:  # no pass/fail before the judge: the share of trials that wrote a report
                rate = sum(1 for r in progress.records if r.report) / max(1, len(progress.records))
            unknown = any(r.usage.cost_unknown for r in progress.records)
            bar.update(bar_id, completed=progress.done, pass_rate=rate,
                       cost=money(progress.cost_usd, unknown))

        try:
            return run(specs, store, parallel=parallel, executor=executor, on_trial=on_trial,
                       rerun_errors=retry_errors)
        except KeyboardInterrupt:
            bar.stop()
            kept = len(store.trials())
            err.print(f"[yellow]interrupted:[/] {kept} finished trial(s) kept in {store.path}; "
                      f"resume with: cellprompt run --resume {store.path}")
            raise typer.Exit(130) from None


def summary_table(store: RunStore) -> Table:
    """Per prompt × model; ids are never cut (they are copied into the next command) and a cost no
    price list knows reads "unknown", not $0."""
    from cellprompt.runs.store import stats_for_stores

    stats = stats_for_stores([store])
    table = Table(title=f"run {store.run_id}")
    for col in ("prompt", "model", "trials", "pass rate", "mean score (95% CI)", "mean cost", "mean time"):
        is_id = col in ("prompt", "model")
        table.add_column(col, justify="left" if is_id else "right", overflow="fold",
                         no_wrap=not is_id)
    for g in stats.by_prompt_model:
        cost = money(g.cost_usd / g.trials, g.cost_unknown)
        table.add_row(g.prompt_id, g.model, str(g.trials), f"{g.pass_rate:.0%}",
                      with_ci(g.score_mean, g.score_ci_low, g.score_ci_high, g.trials, 2),
                      cost, f"{g.wall_s_mean:.1f} s")
    return table


def report_errors(store: RunStore, specs: list) -> bool:
    """Print the first error of each kind among the run's trials; True when any trial errored.

    Why: a run whose trials all failed on a wrong model name or a dead server must say so and exit
    1, not show a score of 0.
    """
    from cellprompt.runs.failures import first_errors

    planned = {s.trial_id for s in specs}
    errors = first_errors(r for r in store.trials() if r.trial_id in planned)
    if not errors:
        return False
    total = sum(count for _, count in errors.values())
    err.print(f"[bold red]{total} of {len(planned)} trial(s) ended in an error[/] (not a score):",
              highlight=False)
    for kind, (message, count) in errors.items():
        err.print(f"  {kind} ×{count}: {message}", highlight=False, markup=False)
    err.print(f"fix the cause, then: cellprompt run --resume {store.path} --retry-errors",
              highlight=False, markup=False)
    return True


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
        config_file: Path | None = typer.Option(
            None, "--config", "-c", help="Experiment file (default: ./cellprompt.yaml if present); "
            "flags override it."),
        replicates: int | None = typer.Option(None, "--replicates", "-n", min=1, help="Default 1."),
        fresh: bool = typer.Option(False, "--fresh",
                                   help="Draw generated datasets (gen:…) with a new seed for this run."),
        max_code_executions: int | None = typer.Option(None, "--max-code-executions", min=1),
        max_turns: int | None = typer.Option(None, "--max-turns", min=1),
        max_cost: float | None = typer.Option(None, "--max-cost", help="USD per trial"),
        wall_time: float | None = typer.Option(None, "--wall-time", help="seconds per trial"),
        no_images: bool = typer.Option(False, "--no-images", help="Do not show figures to the model."),
        parallel: int | None = typer.Option(None, "--parallel", "-j", min=1, help="Default 1."),
        sandbox: str | None = typer.Option(None, "--sandbox", help="auto | bwrap | docker | local"),
        base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
        judge_model: str | None = typer.Option(
            None, "--judge-model", help="Judge of open analyses (default: another family than the agent)."
        ),
        judge_samples: int | None = typer.Option(None, "--judge-samples", min=1,
                                                 help="Judge samples per trial (default 3)."),
        judge_base_url: str | None = typer.Option(None, "--judge-base-url", help="Judge server URL."),
        no_judge: bool = typer.Option(False, "--no-judge", help="Do not judge open analyses now."),
        out_dir: Path | None = typer.Option(None, "--out", help="Folder of runs (default outputs/)."),
        resume: str | None = typer.Option(
            None, "--resume", help="Run id (under --out) or folder to finish; connection flags "
            "(--base-url, --sandbox, --executor) may change, the experiment may not."),
        retry_errors: bool = typer.Option(
            False, "--retry-errors", help="With --resume: run the trials that ended in an error again."),
        executor_name: str | None = typer.Option(
            None, "--executor", help="local (threads) | ray (a cluster); default: the `executor` setting."),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="With --executor ray: auto or ray://HOST:PORT "
            "(default: the `ray_address` setting, else a local cluster)."
        ),
    ) -> None:
        """Run prompts × tasks (or datasets) × models × replicates, each trial in a fresh sandbox.

        With --dataset (or no task on a terminal): an open analysis, ended by a report, judged 0-100.
        Before the first trial every model, the judge, each task and its dataset are checked.
        Exit code: 0 every trial ran, 1 trials ended in errors, 2 a usage mistake.
        """
        settings = get_settings()
        outputs = out_dir or settings.outputs_dir
        judge_cfg: dict | None = None
        model_urls: dict[str, str] = {}  # per-model servers of an experiment file
        exp = None if resume else find_experiment(config_file)
        if resume:  # before any default is filled in: only what the user typed counts
            changes = {"--config": config_file, "--prompt": prompt, "--task": task, "--model": model,
                       "--dataset": dataset, "--objective": objective, "--replicates": replicates,
                       "--fresh": fresh, "--max-code-executions": max_code_executions,
                       "--max-turns": max_turns, "--max-cost": max_cost, "--wall-time": wall_time,
                       "--no-images": no_images, "--judge-model": judge_model}
            if given := [flag for flag, value in changes.items() if value]:
                raise UsageError(f"--resume takes no {', '.join(given)}: the run folder has its plan "
                                 "(start a new run to change it; --base-url, --sandbox, --parallel and "
                                 "--executor may change)")
        if exp is not None:  # flags given on the command line win over the file
            err.print(f"experiment: {config_file or DEFAULT_FILE}", highlight=False)
            prompt, task, dataset = prompt or exp.prompts, task or exp.tasks, dataset or exp.datasets
            objective, sandbox = objective or exp.objective, sandbox or exp.sandbox
            executor_name, ray_address = executor_name or exp.executor, ray_address or exp.ray_address
            model = model or [m.model for m in exp.model_entries()]
            model_urls = {m.model: m.base_url for m in exp.model_entries() if m.base_url}
            replicates, parallel = replicates or exp.replicates, parallel or exp.parallel
            max_code_executions = max_code_executions or exp.limits.max_code_executions
            max_turns, max_cost = max_turns or exp.limits.max_turns, max_cost or exp.limits.max_cost
            wall_time = wall_time or exp.limits.wall_time
            if exp.judge is not None:
                judge_model = judge_model or exp.judge.model
                judge_samples = judge_samples or exp.judge.samples
                judge_base_url = judge_base_url or exp.judge.base_url
        replicates, parallel, judge_samples = replicates or 1, parallel or 1, judge_samples or 3
        if retry_errors and not resume:
            raise UsageError("--retry-errors goes with --resume RUN: pass the run id or folder to retry")
        if resume:
            store = RunStore.open(resume, outputs)
            executor_name, ray_address = resolve_executor(  # the run's own, unless overridden
                executor_name, ray_address, store.manifest().config.get("executor"))
            executor = make_executor(executor_name, parallel=parallel, address=ray_address)
            specs = load_specs(store)
            connection = {k: v for k, v in (("base_url", base_url), ("sandbox_backend", sandbox)) if v}
            judge_cfg = store.manifest().config.get("judge")
            if connection:  # where trials run, not what they are: their ids stay the same
                specs = [s.model_copy(update=connection) for s in specs]
            done = {r.trial_id for r in store.trials() if not (retry_errors and r.status == "error")}
            todo = [s for s in specs if s.trial_id not in done]
            preflight(todo, judge=judge_cfg if todo else None)  # before specs.json changes
            if connection:
                store.write_json("specs.json", [s.model_dump(mode="json") for s in specs])
        else:
            executor_name, ray_address = resolve_executor(executor_name, ray_address)
            executor = make_executor(executor_name, parallel=parallel, address=ray_address)
            if task and dataset:
                raise UsageError("pass --task (a task run) or --dataset (an open analysis), not both")
            is_open = bool(dataset) or not task
            prompt_refs = ask_prompts(prompt)
            datasets = ask_datasets(dataset) if is_open else []
            tasks = [] if is_open else list(task)
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

                if model_urls:
                    raise UsageError("a base_url per model is for task runs; for an open analysis "
                                     "give one server with --base-url")
                judge_cfg = None if no_judge else choose_judge(
                    judge_model, models, judge_samples, judge_base_url, dict.fromkeys(models, agent_url))
                check_models([ModelTarget(m, agent_url) for m in models] + judge_target(judge_cfg))
                store, specs = create_open_run(
                    outputs, prompts=load_prompts(prompt_refs), datasets=datasets, models=models,
                    objective=objective, replicates=replicates, limits=limits, sandbox_backend=backend,
                    base_url=agent_url, judge=judge_cfg, command=command, parallel=parallel)
            else:
                specs = api.plan(tasks, prompts=prompt_refs, models=models, replicates=replicates,
                                 limits=limits, sandbox=backend, base_url=agent_url,
                                 model_base_urls=model_urls, fresh=fresh)
                if any(s.task_kind == "open" for s in specs) and not no_judge:  # open task files
                    judge_cfg = choose_judge(judge_model, models, judge_samples, judge_base_url,
                                             {s.model: s.base_url for s in specs})
                source = f"the model's base_url in {config_file or DEFAULT_FILE}"
                store = api.start_run(specs, out=outputs, judge=judge_cfg, command=command,
                                      config={"parallel": parallel, "model_base_urls": model_urls},
                                      url_sources=dict.fromkeys(model_urls, source))
        remember_executor(store, executor_name, ray_address)
        out.print(f"run [bold]{store.run_id}[/]: {len(specs)} trial(s) → {store.path}")
        execute_run(store, specs, parallel, executor, retry_errors=retry_errors)
        if any(s.task_kind == "open" for s in specs):
            from cellprompt.cli.open_results import finish_open_run

            finish_open_run(store, judge_cfg if not no_judge else None)
        else:
            out.print(summary_table(store))
            out.print(f"results: {store.path}")
        if report_errors(store, specs):
            raise typer.Exit(1)


def find_experiment(path: Path | None) -> Experiment | None:
    """`-c FILE`, else `./cellprompt.yaml` when there is one, else no experiment file."""
    if path is not None:
        return load_experiment(path)
    default = Path(DEFAULT_FILE)
    return load_experiment(default) if default.is_file() else None


def choose_judge(explicit: str | None, models: list[str], samples: int,
                 base_url: str | None, agent_urls: dict[str, str | None] | None = None) -> dict | None:
    """The judge of an open run, checked before any trial runs: another family than the agents by
    default; a warning when it is an agent model or of its family (by name and server, not by the
    protocol a local server speaks); none (with the fix) when the default has no API key."""
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
    shared = same_family(spec, models, judge_url=base_url, agent_urls=agent_urls)
    if shared:
        family = provider_family(spec, base_url)
        kind = f"is from the same family ({family}) as" if family else "is the same model as"
        err.print(f"[yellow]warning:[/] judge {spec} {kind} agent model(s) {', '.join(shared)}: it may "
                  "favour them; pass --judge-model from another family")
    return {"model": spec, "samples": samples, "base_url": base_url}
