"""The report's figures as inline PNG data URIs (no pyplot: no global state, no display needed).

A figure that can say nothing is left out with one line saying why (`Omitted`): cost
vs score when no cost is known is a column at x=0, a box plot of equal scores is a
line, one category's pass rate is the leaderboard again.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from dataclasses import dataclass

from matplotlib.figure import Figure

from cellprompt.export.cells import group_label
from cellprompt.grading.stats import trial_score
from cellprompt.records.run import TrialRecord


@dataclass(frozen=True)
class Omitted:
    reason: str  # one line, shown where the figure would be


def _data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(run_id: str, record: TrialRecord, several_runs: bool) -> str:
    return group_label(run_id, record.spec.prompt_id, record.spec.model, several_runs)


def _same_scores(trials: list[tuple[str, TrialRecord]]) -> Omitted | None:
    if len(trials) < 2:
        return Omitted(f"only {len(trials)} trial(s): nothing to compare")
    scores = {trial_score(r) for _, r in trials}
    return Omitted(f"every trial scored {scores.pop():.3f}") if len(scores) == 1 else None


def score_distribution(trials: list[tuple[str, TrialRecord]], several_runs: bool) -> str | Omitted:
    """Box plot with every trial as a dot: the spread matters as much as the mean."""
    if (omitted := _same_scores(trials)) is not None:
        return omitted
    groups: dict[str, list[float]] = defaultdict(list)
    for run_id, r in trials:
        groups[_label(run_id, r, several_runs)].append(trial_score(r))
    labels = sorted(groups)
    fig = Figure(figsize=(7, 0.5 + 0.45 * max(len(labels), 2)))
    ax = fig.subplots()
    ax.boxplot([groups[k] for k in labels], orientation="horizontal", showfliers=False)
    for i, label in enumerate(labels, start=1):
        values = groups[label]
        jitter = [i + ((j % 7) - 3) * 0.03 for j in range(len(values))]
        ax.scatter(values, jitter, s=10, alpha=0.6, color="#1f77b4")
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("deterministic score")
    ax.set_title("Score distribution per prompt × model")
    return _data_uri(fig)


def cost_vs_score(trials: list[tuple[str, TrialRecord]], several_runs: bool) -> str | Omitted:
    """Only trials with a known cost are placed; unknown prices would sit at x=0 as if free."""
    known = [(run_id, r) for run_id, r in trials if not r.usage.cost_unknown]
    if not any(r.usage.cost_usd > 0 for _, r in known):
        return Omitted("no trial has a known non-zero cost (unpriced or cached models)")
    if (omitted := _same_scores(known)) is not None:
        return omitted
    if len({r.usage.cost_usd for _, r in known}) == 1:
        return Omitted(f"every trial cost the same (${known[0][1].usage.cost_usd:.4f})")
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run_id, r in known:
        groups[_label(run_id, r, several_runs)].append((r.usage.cost_usd, trial_score(r)))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for label in sorted(groups):
        xs, ys = zip(*groups[label], strict=True)
        ax.scatter(xs, ys, s=14, alpha=0.7, label=label)
    ax.set_xlabel("cost per trial (USD)")
    ax.set_ylabel("deterministic score")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Cost vs score" + (f" ({len(trials) - len(known)} unpriced trials left out)"
                                    if len(known) < len(trials) else ""))
    ax.legend(fontsize=7, loc="best")
    return _data_uri(fig)


def pass_rate_by_category(trials: list[tuple[str, TrialRecord]], categories: dict[str, str]) -> str | Omitted:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, r in trials:
        cat = categories.get(r.spec.task_id, "other")
        totals[cat][0] += r.passed
        totals[cat][1] += 1
    if len(totals) < 2:
        return Omitted(f"every task is in one category ({next(iter(totals), 'none')}): "
                       "its pass rate is the leaderboard's")
    names = sorted(totals)
    fig = Figure(figsize=(7, 0.5 + 0.4 * max(len(names), 2)))
    ax = fig.subplots()
    rates = [totals[n][0] / totals[n][1] for n in names]
    ax.barh(names, rates, color="#2ca02c")
    for i, n in enumerate(names):
        ax.text(min(rates[i] + 0.01, 0.9), i, f"{totals[n][0]}/{totals[n][1]}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("pass rate")
    ax.set_title("Pass rate per task category")
    return _data_uri(fig)
