"""`cellprompt notebook` and `cellprompt report`: read what the agents did, compare runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cellprompt.cli.console import err, money, out, with_ci
from cellprompt.config import get_settings
from cellprompt.errors import UsageError
from cellprompt.grading.stats import GroupStats, RunStats
from cellprompt.runs.store import RunStore, stats_for_stores


def _stats_table(title: str, rows: list[GroupStats], with_task: bool, several: bool) -> Table:
    table = Table(title=title)
    cols = (
        (["run"] if several else [])
        + ["prompt", "model"]
        + (["task"] if with_task else [])
        + ["trials", "pass", "score (95% CI)", "judge ± sd", "cost", "tokens", "time s"]
    )
    for col in cols:
        is_id = col in ("run", "prompt", "model", "task")  # ids fold, never "…"
        table.add_column(col, justify="left" if is_id else "right", overflow="fold", no_wrap=not is_id)
    for g in rows:
        judge = "–" if g.judge_mean is None else f"{g.judge_mean:.1f} ± {g.judge_sd or 0:.1f}"
        table.add_row(
            *([g.run_id] if several else []),
            g.prompt_id,
            g.model,
            *([g.task_id or ""] if with_task else []),
            str(g.trials),
            f"{g.pass_rate:.0%}",
            with_ci(g.score_mean, g.score_ci_low, g.score_ci_high, g.trials),
            judge,
            money(g.cost_usd, g.cost_unknown),
            str(g.input_tokens + g.output_tokens),
            f"{g.wall_s_mean:.1f}",
        )
    return table


def _print_stats(stats: RunStats) -> None:
    several = len(stats.runs) > 1
    out.print(_stats_table("Leaderboard", stats.by_prompt_model, False, several))
    out.print(_stats_table("Per task", stats.by_task, True, several))
    ag = stats.agreement
    rho = "n/a" if ag.spearman is None else f"{ag.spearman:.2f} (p={ag.p_value:.2g})"
    out.print(f"Judge vs score: Spearman ρ = {rho} over {ag.n} trials. {ag.note}", highlight=False)
    for note in stats.notes:
        err.print(f"[yellow]note:[/] {note}")


def _notebooks(ref: str, trial: str | None, execute: bool, sandbox: str | None) -> None:
    from cellprompt.export.notebook import write_run_notebooks

    path = Path(ref)
    if path.is_file() and path.suffix.lower() == ".json":
        from cellprompt.export.legacy import convert_legacy_log

        if execute or trial:
            raise UsageError("--trial and --execute work on run folders, not on original-tool logs")
        for written in convert_legacy_log(path):
            out.print(f"wrote {written}", highlight=False)
        return
    store = RunStore.open(ref, get_settings().outputs_dir)
    if trial and trial not in {t.trial_id for t in store.trials()}:
        raise UsageError(f"run {store.run_id} has no trial {trial}: see trials.jsonl for the ids")
    for record, nb, target in write_run_notebooks(store, trial):
        out.print(f"wrote {target}", highlight=False)
        if execute:
            _reproduce(store, record, nb, sandbox or get_settings().sandbox_backend)


def _reproduce(store: RunStore, record, nb, backend: str) -> None:
    from cellprompt.export.reproduce import reproduce, trial_mounts
    from cellprompt.sandbox import open_sandbox

    mounts, notes = trial_mounts(record)
    with err.status(f"re-running {record.trial_id} in a {backend} sandbox"):
        report = reproduce(nb, record.trial_id, lambda: open_sandbox(backend=backend, datasets=mounts))
    report.notes[:0] = notes
    store.write_json(f"notebooks/{record.trial_id}.repro.json", report.model_dump())
    table = Table(title=f"reproducibility of {record.trial_id} ({report.engine})")
    for col in ("cell", "ran", "outputs match", "figures then/now", "error then → now"):
        table.add_column(col)
    for c in report.cells:
        match = "–" if c.matched is None else ("yes" if c.matched else "[red]no[/]")
        errors = "" if c.original_error == c.rerun_error else f"{c.original_error} → {c.rerun_error}"
        figures = f"{c.figures[0]}/{c.figures[1]}"
        table.add_row(str(c.index + 1), "yes" if c.ran else "[red]no[/]", match, figures, errors)
    out.print(table)
    out.print(f"{report.ran}/{len(report.cells)} cells ran, {report.matched} matched", highlight=False)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}")


def register(app: typer.Typer) -> None:
    """Attach `notebook` and `report` to the root app."""

    @app.command("notebook")
    def notebook_command(
        run: str = typer.Argument(..., help="Run folder or id, or a JSON log of the original tool."),
        trial: str | None = typer.Option(None, "--trial", help="Only this trial id."),
        execute: bool = typer.Option(False, "--execute", help="Re-run in a sandbox and check outputs match."),
        sandbox: str | None = typer.Option(None, "--sandbox", help="auto | bwrap | docker | local"),
    ) -> None:
        """Write notebooks/<trial_id>.ipynb for every trial (or convert an original-tool log)."""
        _notebooks(run, trial, execute, sandbox)

    @app.command("report")
    def report_command(
        runs: list[str] = typer.Argument(..., help="One or more run folders or ids, or an evolution folder."),
        output: Path | None = typer.Option(
            None, "-o", "--output", help="HTML file (default RUN/report.html)."
        ),
        fmt: str = typer.Option("html", "--format", "-f", help="html | table | json"),
    ) -> None:
        """The leaderboard and every trial as one self-contained HTML file, or stats as table/JSON."""
        if fmt not in ("html", "table", "json"):
            raise UsageError(f"--format {fmt} is not one of html, table, json")
        settings = get_settings()
        if fmt == "html" and len(runs) == 1 and (Path(runs[0]) / "evolve.json").is_file():
            from cellprompt.evolve import EvolutionFolder
            from cellprompt.evolve.report import write_report

            with err.status("building the evolution report"):
                path = write_report(EvolutionFolder.open(runs[0]), output)
            out.print(f"wrote {path}", highlight=False)
            return
        stores = [RunStore.open(r, settings.outputs_dir) for r in runs]
        if fmt == "json":
            typer.echo(stats_for_stores(stores).model_dump_json(indent=2))
        elif fmt == "table":
            _print_stats(stats_for_stores(stores))
        else:
            from cellprompt import api

            with err.status("building the report"):
                path = api.report(stores, output or stores[0].path / "report.html")
            out.print(f"wrote {path}", highlight=False)
