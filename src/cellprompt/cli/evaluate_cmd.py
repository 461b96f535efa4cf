"""`cellprompt evaluate`: the LLM judge over every trial of a run not yet judged."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cellprompt.cli.console import err, money, out
from cellprompt.cli.open_results import judge_unpriced
from cellprompt.config import get_settings
from cellprompt.runs.store import RunStore


def register(app: typer.Typer) -> None:
    """Attach `evaluate` to the root app."""

    @app.command("evaluate")
    def evaluate_command(
        run: str = typer.Argument(..., help="Run folder or id."),
        judge_model: str | None = typer.Option(
            None, "--judge-model", help="provider:name of the judge (default: not the agents' family)."
        ),
        samples: int = typer.Option(1, "--samples", min=1, help="Judge each trial N times (mean and sd)."),
        rubric: Path | None = typer.Option(None, "--rubric", help="YAML criteria or text instructions."),
        hide_system_prompt: bool = typer.Option(
            False, "--hide-system-prompt", help="Do not show the judge the prompt under test."
        ),
        figures: bool | None = typer.Option(
            None, "--figures/--no-figures", help="Show the judge the figures (default: open analyses only)."
        ),
        base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
    ) -> None:
        """Grade every trial with an LLM judge; results go to evaluations.jsonl."""
        from cellprompt import api
        from cellprompt.grading.judge import default_judge

        store = RunStore.open(run, get_settings().outputs_dir)
        judge_model = judge_model or default_judge(sorted({t.spec.model for t in store.trials()}))
        bar = Progress(TextColumn("[bold]judging"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=err)
        task_id = bar.add_task("judge", total=None)

        def progress(done: int, total: int) -> None:  # the bar appears once judging began:
            bar.start()  # a judge that fails its check leaves one line, not a bar
            bar.update(task_id, completed=done, total=total)

        try:
            summary = api.evaluate(
                store, judge_model, samples=samples, rubric_file=rubric, base_url=base_url,
                show_system_prompt=not hide_system_prompt, include_figures=figures,
                progress=progress, warn=lambda message: err.print(f"[yellow]warning:[/] {message}"),
            )
        finally:
            bar.stop()
        out.print(
            f"judged {summary.judged}, failed {summary.failed}, already judged {summary.skipped}; "
            f"judge cost {money(summary.cost_usd, judge_unpriced(store, judge_model))} "
            f"→ {store.evaluations_path}",
            highlight=False,
        )
        if summary.failed:
            first = next((e for e in store.evaluations().values() if not e.ok), None)
            reason = (first.error or "no reason recorded").strip().splitlines()[0] if first else "?"
            err.print(
                f"[bold red]{summary.failed} judgement(s) failed[/]; the first: {escape(reason)}",
                highlight=False
            )
            err.print(
                "every reason is in evaluations.jsonl; fix the cause and re-run `cellprompt evaluate` "
                "to retry them", highlight=False
            )
            raise typer.Exit(1)  # no silent "judged 0": a failed judge is not a grade
