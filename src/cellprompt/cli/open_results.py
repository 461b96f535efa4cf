"""The end of an open run on the console: judging with a progress bar, the ranking, the report."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellprompt.cli.console import err, money, out, with_ci
from cellprompt.grading.judge import DISAGREEMENT_POINTS
from cellprompt.runs.store import RunStore


def judge_table(store: RunStore) -> Table:
    """Prompts ranked by judge grade, with the CI over replicates and the judge's own spread."""
    from cellprompt.export.judge_ranking import judge_ranking
    from cellprompt.runs.store import stats_for_stores

    rows = judge_ranking([(store.run_id, store.trials(), store.evaluations())])
    unpriced = {(g.prompt_id, g.model) for g in stats_for_stores([store]).by_prompt_model
                if g.cost_unknown}
    table = Table(title=f"run {store.run_id}: judge ranking")
    for col in ("#", "prompt", "model", "judged", "grade (95% CI)", "judge sd", "flag", "cost"):
        table.add_column(col, justify="left" if col in ("prompt", "model", "flag") else "right",
                         overflow="fold")
    for r in rows:
        flag = f"judge disagrees on {r.disagreements}" if r.disagreements else ""
        table.add_row(str(r.rank), r.prompt_id, r.model, f"{r.judged}/{r.trials}",
                      with_ci(r.grade_mean, r.ci_low, r.ci_high, r.judged, 1),
                      f"{r.sample_sd or 0:.1f}", flag,
                      money(r.cost_usd, (r.prompt_id, r.model) in unpriced))
    return table


def judge_unpriced(store: RunStore, judge_model: str) -> bool:
    """Whether the judge's calls had no price (its cost then reads "unknown", not $0)."""
    return any(e.usage.cost_unknown for e in store.evaluations().values()
               if e.judge_model == judge_model)


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
                  f"each), failed {summary.failed}; judge cost "
                  f"{money(summary.cost_usd, judge_unpriced(store, judge['model']))}", highlight=False)
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
