"""The evolution's picture: best validation score against trials used, and what changed in the prompt.

`html_section` returns a `(title, html)` pair for the HTML report's
`extra_sections`; it is self-contained (the plot is inlined as a data URI).
"""

from __future__ import annotations

import base64
import difflib
import html
import io
from pathlib import Path

from cellprompt.evolve.folder import EvolutionFolder, Progress


def _figure_png(points: list[Progress]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=110)
    ax = fig.subplots()
    xs = [p.trials_used for p in points if p.best_val is not None]
    ys = [p.best_val for p in points if p.best_val is not None]
    if xs:
        ax.step(xs, ys, where="post", color="#2b6cb0", linewidth=2)
        ax.plot(xs, ys, "o", color="#2b6cb0", markersize=3)
    ax.set_xlabel("trials used")
    ax.set_ylabel("best validation score")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_progress(points: list[Progress], path: Path) -> Path:
    path.write_bytes(_figure_png(points))
    return path


def prompt_diff_html(seed: str, best: str) -> str:
    """A side-by-side diff table; identical prompts say so instead of an empty table."""
    if seed == best:
        return "<p>The best prompt is the seed prompt: no candidate beat it by more than the noise.</p>"
    table = difflib.HtmlDiff(wrapcolumn=80).make_table(
        seed.splitlines(), best.splitlines(), fromdesc="seed", todesc="best"
    )
    style = (
        "<style>.diff td{font-family:monospace;font-size:12px;vertical-align:top}"
        ".diff_add{background:#e6ffec}.diff_sub{background:#ffebe9}.diff_chg{background:#fff5b1}</style>"
    )
    return style + table


def candidate_rows(folder: EvolutionFolder) -> list[dict[str, str]]:
    """One row per candidate, in order of first appearance: what changed, how it scored, its verdict.

    The verdict is the candidate's last decisive step (accepted, rejected, flagged); its
    reason and the paired comparison it rested on come with it.
    """
    from cellprompt.evolve.context import describe_change

    rows: dict[str, dict[str, str]] = {}
    texts: dict[str, str] = {}
    trials: dict[str, int] = {}
    for rec in folder.candidates():
        texts.setdefault(rec.candidate_id, rec.text)
        trials[rec.candidate_id] = trials.get(rec.candidate_id, 0) + rec.trials
        row = rows.setdefault(rec.candidate_id, {
            "id": rec.candidate_id, "parent": ",".join(rec.parents), "origin": rec.origin, "train": "",
            "val": "", "verdict": rec.verdict, "reason": rec.reason, "change": ""})
        row["parent"] = row["parent"] or ",".join(rec.parents)
        if rec.split in ("train", "val") and rec.mean_score is not None:
            row[rec.split] = f"{rec.mean_score:.3f}"
        if rec.verdict != "evaluated" or row["verdict"] == "evaluated":
            gate = f" ({rec.gate['delta']:+.3f} ± {rec.gate['se']:.3f})" if rec.gate else ""
            row["verdict"], row["reason"] = rec.verdict, (rec.reason or "") + ("" if rec.reason else gate)
    for cid, row in rows.items():
        parent = row["parent"].split(",")[0]
        row["trials"] = str(trials[cid])
        row["change"] = describe_change(texts.get(parent, ""), texts[cid], 160) if parent else "seed"
    return list(rows.values())


def candidate_table_html(folder: EvolutionFolder) -> str:
    cols = ("id", "parent", "change", "train", "val", "verdict", "reason", "trials")
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(row[c])}</td>" for c in cols) + "</tr>"
        for row in candidate_rows(folder)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_section(folder: EvolutionFolder) -> tuple[str, str]:
    """(title, html) for `build_report(..., extra_sections=[...])`."""
    cfg = folder.config()
    best_path = folder.path / "best_prompt.txt"
    best = best_path.read_text(encoding="utf-8") if best_path.exists() else cfg.seed_prompt
    png = base64.b64encode(_figure_png(folder.progress())).decode()
    parts = [
        f"<p>Strategy <b>{html.escape(cfg.strategy)}</b>, budget {cfg.budget_trials} trials, "
        f"{cfg.replicates} replicate(s); selection on {len(cfg.validation_tasks)} validation task(s).</p>",
        f'<img alt="best validation score against trials used" src="data:image/png;base64,{png}">',
    ]
    test_path = folder.path / "test_comparison.json"
    if test_path.exists():
        from cellprompt.evolve.schema import TestComparison

        test = TestComparison.model_validate_json(test_path.read_text(encoding="utf-8"))
        rows = "".join(
            f"<tr><td>{html.escape(t)}</td><td>{_mean(test.seed.task_scores[t])}</td>"
            f"<td>{_mean(test.best.task_scores[t])}</td></tr>"
            for t in test.tasks
        )
        se = f" ± {test.delta_se:.3f}" if test.delta_se is not None else ""
        delta = f"{test.delta:+.3f}{se}" if test.delta is not None else "n/a"
        parts.append(
            f"<h4>Held-out test tasks</h4><table><tr><th>task</th><th>seed</th><th>best</th></tr>{rows}"
            f"<tr><td><b>mean</b></td><td><b>{_fmt(test.seed.mean)}</b></td>"
            f"<td><b>{_fmt(test.best.mean)}</b></td></tr></table><p>best − seed: {delta}</p>"
        )
    summary_path = folder.path / "summary.json"
    if summary_path.exists():
        from cellprompt.evolve.schema import EvolveSummary

        summary = EvolveSummary.model_validate_json(summary_path.read_text(encoding="utf-8"))
        parts += [f"<p><b>warning:</b> {html.escape(w)}</p>" for w in summary.warnings]
        if summary.stop_reason:
            parts.append(f"<p>Stopped: {html.escape(summary.stop_reason)}</p>")
    parts.append("<h4>Candidates</h4>" + candidate_table_html(folder))
    parts.append("<h4>Seed prompt vs best prompt</h4>" + prompt_diff_html(cfg.seed_prompt, best))
    return "Prompt evolution", "\n".join(parts)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _mean(scores: list[float]) -> str:
    return _fmt(sum(scores) / len(scores) if scores else None)


def write_report(folder: EvolutionFolder, out: Path | None = None) -> Path:
    """The run report of every trial the evolution ran, with its curve and seed-vs-best diff on top."""
    from cellprompt.export.report import build_report
    from cellprompt.runs.store import RunStore

    cfg = folder.config()
    return build_report([RunStore.open(folder.run_dir)], out or folder.path / "report.html",
                        title=f"evolution {cfg.evolution_id}", extra_sections=[html_section(folder)])
