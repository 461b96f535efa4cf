"""`cellprompt demo`: the whole flow offline — built-in suite, reference model, grades, notebooks, report."""

from __future__ import annotations

from pathlib import Path

import typer

from cellprompt.cli.console import out


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        out_dir: Path | None = typer.Option(None, "--out", help="Folder of runs (default outputs/)."),
        sandbox: str | None = typer.Option(None, "--sandbox", help="auto | bwrap | docker"),
        parallel: int = typer.Option(2, "--parallel", "-j", min=1),
        replicates: int = typer.Option(1, "--replicates", "-n", min=1),
    ) -> None:
        """Run the built-in task suite with the `reference` model (no key, no network) and report."""
        from cellprompt.cli.run_cmd import execute_run, summary_table
        from cellprompt.config import get_settings
        from cellprompt.export.notebook import write_run_notebooks
        from cellprompt.export.report import build_report
        from cellprompt.prompts import builtin_prompt
        from cellprompt.runs.runner import create_run, plan_trials
        from cellprompt.tasks import builtin_tasks

        settings = get_settings()
        tasks = [t.id for t in builtin_tasks()]
        specs = plan_trials(prompts={"baseline": builtin_prompt()}, tasks=tasks, models=["reference"],
                            replicates=replicates, sandbox_backend=sandbox or settings.sandbox_backend)
        store = create_run(out_dir or settings.outputs_dir, specs, command="cellprompt demo",
                           config={"prompts": ["baseline"], "tasks": tasks, "models": ["reference"],
                                   "replicates": replicates, "parallel": parallel})
        out.print(f"demo run [bold]{store.run_id}[/]: {len(specs)} built-in task(s), reference model")
        execute_run(store, specs, parallel)
        out.print(summary_table(store))
        notebooks = write_run_notebooks(store)
        report = build_report([store], store.path / "report.html")
        out.print(f"notebooks: {store.path / 'notebooks'} ({len(notebooks)})", highlight=False)
        out.print(f"report: {report}", highlight=False)
