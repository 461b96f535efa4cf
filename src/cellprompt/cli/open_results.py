"""The end of an open run on the console: judging with a progress bar, the ranking, the report."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellprompt.cli.console import err, out
from cellprompt.grading.judge import DISAGREEMENT_POINTS
from cellprompt.runs.store import RunStore


def judge_table(store: RunStore) -> Table:
    """Prompts ranked by judge grade, with the CI over replicates and the judge's own spread."""
    from cellprompt.export.judge_ranking import judge_ranking

    rows = judge_ranking([(store.run_id, store.trials(), store.evaluations())])
    table = Table(title=f"run {store.run_id}: judge ranking")
    for col in ("#", "prompt", "model", "judged", "grade (95% CI)", "judge sd", "flag", "cost"):
        table.add_column(col, justify="left" if col in ("prompt", "model", "flag") else "right",
                         overflow="fold")
    for r in rows:
        flag = f"judge disagrees on {r.disagreements}" if r.disagreements else ""
        table.add_row(str(r.rank), r.prompt_id, r.model, f"{r.judged}/{r.trials}",
                      f"{r.grade_mean:.1f} ({r.ci_low:.1f}–{r.ci_high:.1f})",
                      f"{r.sample_sd or 0:.1f}", flag, f"${r.cost_usd:.4f}")
    return table


def finish_open_run(store: RunStore, judge: dict | None) -> None:
    """Judge what is not judged yet (when a judge is configured), then rank and write the report."""
    from cellprompt.export.report import build_report
    from cellprompt.runs.open_run import judge_open_run

    trials = store.trials()
    reported = sum(1 for t in trials if t.report)
    out.print(f"{len(trials)} trial(s), {reported} with a written report")
    if judge:
        with Progress(TextColumn("[bold]judging"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as bar:
            bar_id = bar.add_task("judge", total=None)
            summary = judge_open_run(
                store, judge["model"], samples=judge.get("samples") or 3, base_url=judge.get("base_url"),
                progress=lambda done, total: bar.update(bar_id, completed=done, total=total),
                warn=None)  # the same-family warning was given before the trials ran
        out.print(f"judged {summary.judged} with {judge['model']} ({judge.get('samples')} sample(s) "
                  f"each), failed {summary.failed}; judge cost ${summary.cost_usd:.4f}", highlight=False)
        if summary.failed:
            err.print(f"[yellow]{summary.failed} judgement(s) failed[/]: reasons in evaluations.jsonl; "
                      f"retry with: cellprompt evaluate {store.run_id} --judge-model {judge['model']}")
        if summary.disagreements:
            err.print(f"[yellow]the judge's samples disagree by more than {DISAGREEMENT_POINTS:.0f} "
                      f"points on {summary.disagreements} trial(s)[/]: see the report")
    else:
        err.print(f"[yellow]not judged[/]: grade with `cellprompt evaluate {store.run_id} "
                  "--judge-model provider:name --samples 3 --figures`")
    if store.evaluations():
        out.print(judge_table(store))
    report = build_report([store], store.path / "report.html")
    out.print(f"report: {report}", highlight=False)
    out.print(f"notebooks: cellprompt notebook {store.run_id}", highlight=False)
