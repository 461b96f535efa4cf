"""Scores laid out by task: the prompts × tasks heat map, task categories, differing task sets.

A leaderboard mean hides where a prompt wins; the heat map shows each (prompt ×
model) × task cell with its n, columns grouped by the task's category, and a
second map gives the per-category means. A mean is only comparable with another
over the same tasks, so runs (or prompts within a run) that cover different task
sets are named with the tasks that differ.
"""

from __future__ import annotations

import html
import statistics
from collections import defaultdict

from cellprompt.export.cells import fmt, group_label
from cellprompt.grading.stats import trial_score
from cellprompt.records.run import TrialRecord

Cell = tuple[str, str]  # (row label, column)


def task_categories(trials: list[tuple[str, TrialRecord]]) -> dict[str, str]:
    """Category by task id, read from the task spec; a task that no longer loads is 'other'."""
    from cellprompt.tasks import load_task

    found: dict[str, str] = {}
    for _, r in trials:
        if r.spec.task_id in found:
            continue
        try:
            found[r.spec.task_id] = load_task(r.spec.task_ref).metadata.category
        except Exception:  # a moved or broken task file must not stop the report
            found[r.spec.task_id] = "other"
    return found


def _colour(mean: float) -> str:
    """Red (0) through yellow to green (1); light enough for dark text."""
    return f"hsl({120 * min(max(mean, 0.0), 1.0):.0f}, 65%, 80%)"


def heat_map_html(
    values: dict[Cell, list[float]], rows: list[str], groups: list[tuple[str, list[str]]],
    table_id: str, group_heading: bool,
) -> str:
    """A table of mean scores, one cell per (row, column) with its n; `groups` orders the columns."""
    columns = [c for _, cols in groups for c in cols]
    out = [f'<table id="{table_id}" class="grid heat"><thead>']
    if group_heading:
        out.append("<tr><th></th>" + "".join(
            f'<th colspan="{len(cols)}" class="category">{html.escape(g)}</th>' for g, cols in groups
        ) + "</tr>")
    heads = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    out.append(f"<tr><th></th>{heads}</tr></thead><tbody>")
    for row in rows:
        out.append(f"<tr><th>{html.escape(row)}</th>")
        for col in columns:
            scores = values.get((row, col))
            if not scores:
                out.append('<td class="missing" title="not run">–</td>')
                continue
            mean = statistics.fmean(scores)
            out.append(
                f'<td class="cell" style="background:{_colour(mean)}" '
                f'title="{html.escape(row)} on {html.escape(col)}: mean {fmt(mean, 3)} over {len(scores)}">'
                f'<span class="mean">{fmt(mean)}</span> <span class="n">n={len(scores)}</span></td>'
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def heat_maps_html(
    trials: list[tuple[str, TrialRecord]], categories: dict[str, str], several_runs: bool
) -> str:
    """The prompts × tasks map (columns grouped by category) and the prompts × categories map."""
    by_task: dict[Cell, list[float]] = defaultdict(list)
    by_category: dict[Cell, list[float]] = defaultdict(list)
    for run_id, r in trials:
        row = group_label(run_id, r.spec.prompt_id, r.spec.model, several_runs)
        by_task[(row, r.spec.task_id)].append(trial_score(r))
        by_category[(row, categories.get(r.spec.task_id, "other"))].append(trial_score(r))
    rows = list(dict.fromkeys(row for row, _ in by_task))
    tasks_in: dict[str, list[str]] = defaultdict(list)
    for task in sorted({t for _, t in by_task}):
        tasks_in[categories.get(task, "other")].append(task)
    groups = sorted(tasks_in.items())
    return (
        '<h3>Prompts × tasks</h3><p class="hint">Mean deterministic score per cell and its n '
        "(trials); tasks grouped by category.</p>"
        + heat_map_html(by_task, rows, groups, "heat-tasks", group_heading=True)
        + '<h3 id="categories">By category</h3><p class="hint">Mean score over the trials of each '
        "category's tasks, and n.</p>"
        + heat_map_html(by_category, rows, [("", [g for g, _ in groups])], "heat-categories",
                        group_heading=False)
    )


def task_set_warnings(
    trials: list[tuple[str, TrialRecord]], run_ids: list[str], several_runs: bool
) -> list[str]:
    """Plain sentences naming the runs (and prompt × model groups) whose task sets differ."""
    by_run: dict[str, set[str]] = {rid: set() for rid in run_ids}
    by_group: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run_id, r in trials:
        by_run[run_id].add(r.spec.task_id)
        label = group_label(run_id, r.spec.prompt_id, r.spec.model, several_runs)
        by_group[(run_id, label)].add(r.spec.task_id)
    notes: list[str] = []
    union = set().union(*by_run.values())
    if len({frozenset(s) for s in by_run.values()}) > 1:
        lacks = [f"{rid} lacks {', '.join(sorted(union - s))}" for rid, s in by_run.items() if union - s]
        notes.append("These runs cover different task sets, so their means compare different tasks: "
                     + "; ".join(lacks) + ". Paired comparisons use only the shared tasks.")
    for (run_id, label), tasks in by_group.items():
        if by_run[run_id] - tasks:
            notes.append(f"{label} did not run {', '.join(sorted(by_run[run_id] - tasks))}: "
                         "its mean is over fewer tasks.")
    return notes
