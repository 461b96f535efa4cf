"""The report's figures as inline PNG data URIs (no pyplot: no global state, no display needed)."""

from __future__ import annotations

import base64
import io
from collections import defaultdict

from matplotlib.figure import Figure

from cellprompt.grading.stats import trial_score
from cellprompt.records.run import TrialRecord


def _data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(run_id: str, record: TrialRecord, several_runs: bool) -> str:
    label = f"{record.spec.prompt_id} × {record.spec.model}"
    return f"{run_id}: {label}" if several_runs else label


def score_distribution(trials: list[tuple[str, TrialRecord]], several_runs: bool) -> str:
    """Box plot with every trial as a dot: the spread matters as much as the mean."""
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


def cost_vs_score(trials: list[tuple[str, TrialRecord]], several_runs: bool) -> str:
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run_id, r in trials:
        groups[_label(run_id, r, several_runs)].append((r.usage.cost_usd, trial_score(r)))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for label in sorted(groups):
        xs, ys = zip(*groups[label], strict=True)
        ax.scatter(xs, ys, s=14, alpha=0.7, label=label)
    ax.set_xlabel("cost per trial (USD)")
    ax.set_ylabel("deterministic score")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Cost vs score")
    ax.legend(fontsize=7, loc="best")
    return _data_uri(fig)


def pass_rate_by_category(trials: list[tuple[str, TrialRecord]], categories: dict[str, str]) -> str:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, r in trials:
        cat = categories.get(r.spec.task_ref, "other")
        totals[cat][0] += r.passed
        totals[cat][1] += 1
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
