"""The evolution's story: the curve, the held-out comparison, the accepted path, a leaderboard per
split, every candidate with its verdict, and what changed in the prompt.

`html_section` returns a `(title, html)` pair for the HTML report's
`extra_sections`; it is self-contained (the plot is inlined as a data URI).
Scores are kept apart by split: a candidate's training, validation and test
trials answer different questions, and one mean over all of them ranks nothing.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from cellprompt.evolve.evidence import fitness, scorable
from cellprompt.evolve.folder import EvolutionFolder, Progress
from cellprompt.evolve.schema import Split, TestComparison
from cellprompt.grading.stats import bootstrap_ci

SPLIT_NAMES: dict[Split, str] = {"train": "training", "val": "validation", "test": "held-out test"}


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


@dataclass(frozen=True)
class SplitScore:
    """A candidate's scorable trials on one split: their mean and its bootstrap 95% interval."""

    mean: float
    low: float
    high: float
    trials: int
    unscored: int  # errored trials (and failed judgements) left out of the mean

    def text(self) -> str:
        ci = f" [{self.low:.3f}, {self.high:.3f}]" if self.trials > 1 else ""
        return f"{self.mean:.3f}{ci}"


def split_scores(folder: EvolutionFolder) -> dict[tuple[str, Split], SplitScore]:
    """(candidate id, split) -> its score from every trial of the run store on that split's tasks."""
    cfg = folder.config()
    splits: dict[Split, set[str]] = {"train": set(cfg.train_tasks), "val": set(cfg.validation_tasks),
                                     "test": set(cfg.test_tasks)}
    values: dict[tuple[str, Split], list[float]] = {}
    unscored: dict[tuple[str, Split], int] = {}
    for b in folder.trials():
        for split, tasks in splits.items():
            if b.task_ref not in tasks:
                continue
            key = (b.prompt_id, split)
            if scorable(b.record, b.evaluation, cfg.judge_weight):
                values.setdefault(key, []).append(fitness(b.record, b.evaluation, cfg.judge_weight))
            else:
                unscored[key] = unscored.get(key, 0) + 1
    out: dict[tuple[str, Split], SplitScore] = {}
    for key in {*values, *unscored}:
        vals = values.get(key, [])
        low, high = bootstrap_ci(vals, seed=0) if vals else (float("nan"), float("nan"))
        mean = fmean(vals) if vals else float("nan")
        out[key] = SplitScore(mean, low, high, len(vals), unscored.get(key, 0))
    return out


def lineage(folder: EvolutionFolder, best_id: str) -> dict:
    """Every candidate with its parents and best validation score, and the path from the seed to the best."""
    nodes: dict[str, dict] = {}
    for rec in folder.candidates():
        node = nodes.setdefault(
            rec.candidate_id, {"parents": [], "origin": rec.origin, "val": None, "verdicts": []}
        )
        node["parents"] = node["parents"] or rec.parents
        node["verdicts"].append(rec.verdict)
        if rec.split == "val" and rec.mean_score is not None:
            node["val"] = rec.mean_score if node["val"] is None else max(node["val"], rec.mean_score)
    path, cur, seen = [], best_id, set()
    while cur and cur not in seen:
        seen.add(cur)
        path.append(cur)
        cur = (nodes.get(cur, {}).get("parents") or [None])[0]
    return {"best": best_id, "path_from_seed": list(reversed(path)), "candidates": nodes}


def candidate_rows(folder: EvolutionFolder) -> list[dict[str, str]]:
    """One row per candidate, in order of first appearance: what changed, how it scored, its verdict.

    The verdict is the candidate's last decisive step (accepted, rejected, flagged); its
    reason and the paired comparison it rested on come with it.
    """
    from cellprompt.evolve.context import describe_change

    scores = split_scores(folder)
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
        if rec.verdict != "evaluated" or row["verdict"] == "evaluated":
            gate = f" ({rec.gate['delta']:+.3f} ± {rec.gate['se']:.3f})" if rec.gate else ""
            row["verdict"], row["reason"] = rec.verdict, (rec.reason or "") + ("" if rec.reason else gate)
    for cid, row in rows.items():
        parent = row["parent"].split(",")[0]
        splits: tuple[Split, Split] = ("train", "val")
        for split in splits:
            score = scores.get((cid, split))
            row[split] = score.text() if score is not None and score.trials else ""
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


def leaderboards_html(folder: EvolutionFolder, best_id: str | None) -> str:
    """One ranked table per split: mean score with its bootstrap 95% interval, and the verdict."""
    cfg = folder.config()
    scores = split_scores(folder)
    verdicts = {r["id"]: r["verdict"] for r in candidate_rows(folder)}
    seed_id = next((c.candidate_id for c in folder.candidates() if c.origin == "seed"), None)
    parts = []
    for split, name in SPLIT_NAMES.items():
        ranked = sorted(((cid, sc) for (cid, sp), sc in scores.items() if sp == split and sc.trials),
                        key=lambda kv: -kv[1].mean)
        if not ranked:
            continue
        shared = split == "val" and not cfg.val_tasks
        same = " (the training tasks: no separate validation set)" if shared else ""
        rows = "".join(
            f"<tr><td>{i}</td><td>{html.escape(cid)}{_role(cid, best_id, seed_id)}</td>"
            f"<td>{html.escape(verdicts.get(cid, ''))}</td><td>{sc.mean:.3f}</td>"
            f"<td>[{sc.low:.3f}, {sc.high:.3f}]</td><td>{sc.trials}"
            f"{f' (+{sc.unscored} unscored)' if sc.unscored else ''}</td></tr>"
            for i, (cid, sc) in enumerate(ranked, start=1)
        )
        parts.append(f"<h5>{name}{same}</h5><table><tr><th>#</th><th>candidate</th><th>verdict</th>"
                     f"<th>mean</th><th>95% CI</th><th>trials</th></tr>{rows}</table>")
    return "".join(parts)


def _role(cid: str, best_id: str | None, seed_id: str | None) -> str:
    roles = [r for r, i in (("seed", seed_id), ("best", best_id)) if i == cid]
    return f" <b>({', '.join(roles)})</b>" if roles else ""


def accepted_path_html(folder: EvolutionFolder, best_id: str) -> str:
    """The steps from the seed to the best prompt: what each changed and the evidence it won on."""
    rows = {r["id"]: r for r in candidate_rows(folder)}
    steps = [cid for cid in lineage(folder, best_id)["path_from_seed"] if cid in rows]
    if len(steps) <= 1:
        return "<p>No candidate was accepted: the best prompt is the seed.</p>"
    items = []
    for i, cid in enumerate(steps):
        row = rows[cid]
        parts = [f"<code>{html.escape(cid)}</code>", html.escape(row["change"])]
        if row["val"]:
            parts.append(f"validation {html.escape(row['val'])}")
        if i:  # the seed needs no reason
            parts.append(html.escape(row["reason"]))
        items.append("<li>" + " — ".join(parts) + "</li>")
    items_html = "".join(items)
    return f"<ol>{items_html}</ol>"


def test_comparison_html(test: TestComparison) -> str:
    """Seed and best on every held-out task, and best − seed with its 95% interval."""
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{_mean(test.seed.task_scores.get(t, []))}</td>"
        f"<td>{_mean(test.best.task_scores.get(t, []))}</td></tr>"
        for t in test.tasks
    )
    ci = test.ci95()
    delta = "n/a" if test.delta is None else f"{test.delta:+.3f}" + (
        f" (95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}], paired over {len(test.tasks)} task(s) × "
        f"{test.replicates} replicate(s))" if ci else "")
    return (f"<table><tr><th>task</th><th>seed</th><th>best</th></tr>{rows}"
            f"<tr><td><b>mean</b></td><td><b>{_fmt(test.seed.mean)}</b></td>"
            f"<td><b>{_fmt(test.best.mean)}</b></td></tr></table><p>best − seed: {delta}</p>")


def html_section(folder: EvolutionFolder) -> tuple[str, str]:
    """(title, html) for `build_report(..., extra_sections=[...])`."""
    from cellprompt.evolve.folder import text_id
    from cellprompt.evolve.schema import EvolveSummary

    cfg = folder.config()
    best_path = folder.path / "best_prompt.txt"
    best = best_path.read_text(encoding="utf-8") if best_path.exists() else cfg.seed_prompt
    png = base64.b64encode(_figure_png(folder.progress())).decode()
    parts = [
        f"<p>Strategy <b>{html.escape(cfg.strategy)}</b>, budget {cfg.budget_trials} trials, "
        f"{cfg.replicates} replicate(s); selection on {len(cfg.validation_tasks)} validation task(s)"
        + ("" if cfg.dataset_seed is None else
           f"; generated datasets drawn with seed {cfg.dataset_seed} (--fresh)") + ".</p>",
        f'<img alt="best validation score against trials used" src="data:image/png;base64,{png}">',
    ]
    test_path = folder.path / "test_comparison.json"
    if test_path.exists():
        test = TestComparison.model_validate_json(test_path.read_text(encoding="utf-8"))
        parts.append("<h4>Held-out test tasks</h4>" + test_comparison_html(test))
    summary_path = folder.path / "summary.json"
    if summary_path.exists():
        summary = EvolveSummary.model_validate_json(summary_path.read_text(encoding="utf-8"))
        parts += [f"<p><b>warning:</b> {html.escape(w)}</p>" for w in summary.warnings]
        if summary.stop_reason:
            parts.append(f"<p>Stopped: {html.escape(summary.stop_reason)}</p>")
    best_id = text_id(best)
    parts.append("<h4>Accepted path</h4>" + accepted_path_html(folder, best_id))
    parts.append("<h4>Leaderboards by split</h4>" + leaderboards_html(folder, best_id))
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
