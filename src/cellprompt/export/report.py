"""One self-contained HTML report of one or several runs.

No network at view time: CSS, JS and figures are inline. Trial bodies are JSON in
`<script type="application/json">` blocks that the browser neither parses nor lays
out until a reader opens that trial, which keeps a 500-trial report responsive.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from cellprompt.export import plots
from cellprompt.export.cells import MIN_N, ci_text, fmt
from cellprompt.export.judge_ranking import judge_ranking, judge_section_html
from cellprompt.export.markup import code_css
from cellprompt.export.paired import paired_differences, paired_section_html
from cellprompt.export.task_grid import heat_maps_html, task_categories, task_set_warnings
from cellprompt.export.trial_body import trial_payload
from cellprompt.grading.stats import GroupStats, RunStats, compute_stats
from cellprompt.records.run import Evaluation, TrialRecord
from cellprompt.runs.store import RunStore

GroupKey = tuple[str, str, str, str]  # run, prompt, model, task


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _json_script(data: object) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can end the block early."""
    return json.dumps(data, default=str, separators=(",", ":")).replace("<", "\\u003c")


def trial_anchor(trial_id: str) -> str:
    """The fragment that opens one trial: `report.html#trial-<id>`."""
    return "trial-" + quote(trial_id, safe="-_.")


def _cost(usd: float, unknown: bool) -> str:
    """An unpriced model's calls count 0 in `usd`: say so rather than show a price."""
    if not unknown:
        return fmt(usd, 4)
    return "unknown" if usd == 0 else f"≥ {fmt(usd, 4)} (part unknown)"


def _trial_links(trials: list[tuple[str, TrialRecord]]) -> dict[GroupKey, list[str]]:
    links: dict[GroupKey, list[str]] = defaultdict(list)
    for run_id, r in sorted(trials, key=lambda t: t[1].spec.replicate):
        key = (run_id, r.spec.prompt_id, r.spec.model, r.spec.task_id)
        links[key].append(f'<a href="#{_esc(trial_anchor(r.trial_id))}">r{r.spec.replicate}</a>')
    return links


def _group_row(g: GroupStats, several_runs: bool, with_task: bool, links: dict[GroupKey, list[str]]) -> str:
    judge = "–" if g.judge_mean is None else f"{g.judge_mean:.1f} ± {g.judge_sd or 0:.1f} (n={g.judged})"
    cells = (
        ([g.run_id] if several_runs else [])
        + [g.prompt_id, g.model]
        + ([g.task_id] if with_task else [])
        + [
            g.trials,
            f"{g.pass_rate:.0%}",
            fmt(g.score_mean, 3),
            ci_text(g.score_ci_low, g.score_ci_high, g.trials),
            judge,
            _cost(g.cost_usd, g.cost_unknown),
            g.input_tokens + g.output_tokens,
            fmt(g.wall_s_mean, 1),
        ]
    )
    row = "".join(f"<td>{_esc(c)}</td>" for c in cells)
    if with_task:  # trusted markup: links built from escaped ids
        row += "<td>" + " ".join(links.get((g.run_id, g.prompt_id, g.model, g.task_id or ""), [])) + "</td>"
    return f"<tr>{row}</tr>"


def _group_table(
    rows: list[GroupStats], table_id: str, several_runs: bool, *,
    categories: dict[str, str] | None = None, links: dict[GroupKey, list[str]] | None = None,
) -> str:
    """The leaderboard (`categories` None) or the per-task table, grouped by task category."""
    with_task = categories is not None
    heads = (
        (["run"] if several_runs else [])
        + ["prompt", "model"]
        + (["task"] if with_task else [])
        + ["trials", "pass rate", "score", "95% CI", "judge", "cost $", "tokens", "time s"]
        + (["open a trial"] if with_task else [])
    )
    out = [f'<table id="{table_id}" class="grid"><thead><tr>']
    out += [f"<th>{_esc(h)}</th>" for h in heads]
    out.append("</tr></thead><tbody>")
    if categories is None:
        out += [_group_row(g, several_runs, False, {}) for g in rows]
    else:
        by_category: dict[str, list[GroupStats]] = defaultdict(list)
        for g in rows:
            by_category[categories.get(g.task_id or "", "other")].append(g)
        for category, members in sorted(by_category.items()):
            trials = sum(g.trials for g in members)
            mean = sum(g.score_mean * g.trials for g in members) / trials
            tasks = len({g.task_id for g in members})
            out.append(
                f'<tr class="category-row"><th colspan="{len(heads)}">{_esc(category)}: mean score '
                f"{fmt(mean, 3)} over {trials} trials of {tasks} task(s)</th></tr>"
            )
            out += [_group_row(g, several_runs, True, links or {}) for g in members]
    out.append("</tbody></table>")
    return "".join(out)


def _status(r: TrialRecord) -> str:
    if r.spec.task_kind == "open":
        return "reported" if r.status == "submitted" else r.status
    return "passed" if r.passed else (r.status if r.status != "submitted" else "not passed")


def _trial_rows(items: list[tuple[str, TrialRecord, Evaluation | None]], several_runs: bool) -> str:
    out = [
        '<table id="trials" class="grid"><thead><tr>',
        "<th>#</th>",
        "<th>run</th>" if several_runs else "",
        "<th>task</th><th>prompt</th><th>model</th><th>rep</th><th>status</th><th>score</th>"
        "<th>judge</th><th>cost $</th></tr></thead><tbody>",
    ]
    for i, (run_id, r, ev) in enumerate(items):
        judge = "failed" if ev is not None and not ev.ok else fmt(ev.grade_mean if ev else None, 1)
        judge += " ⚠" if ev is not None and ev.disagreement else ""
        cells = [
            *([run_id] if several_runs else []),
            r.spec.task_id,
            r.spec.prompt_id,
            r.spec.model,
            r.spec.replicate,
            _status(r),
            fmt(r.score, 3),
            judge,
            _cost(r.usage.cost_usd, r.usage.cost_unknown),
        ]
        anchor = _esc(trial_anchor(r.trial_id))
        out.append(
            f'<tr class="trial-row" id="{anchor}" data-index="{i}" data-trial-id="{_esc(r.trial_id)}" '
            f'tabindex="0"><td><a href="#{anchor}" title="link to this trial">{i + 1}</a></td>'
            + "".join(f"<td>{_esc(c)}</td>" for c in cells)
            + "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _asset(name: str) -> str:
    return (resources.files("cellprompt.export") / "assets" / name).read_text(encoding="utf-8")


def _plots_html(flat: list[tuple[str, TrialRecord]], several: bool, categories: dict[str, str]) -> str:
    figs = [
        ("Score distribution", plots.score_distribution(flat, several)),
        ("Cost vs score", plots.cost_vs_score(flat, several)),
        ("Pass rate per task category", plots.pass_rate_by_category(flat, categories)),
    ]
    return '<section id="plots"><h2>Plots</h2>' + "".join(
        f"<p class='plot-note'>{_esc(t)} left out: {_esc(src.reason)}.</p>"
        if isinstance(src, plots.Omitted)
        else f'<figure><img class="plot" alt="{_esc(t)}" src="{src}">'
        f"<figcaption>{_esc(t)}</figcaption></figure>"
        for t, src in figs
    ) + "</section>"


def _sealed_sections(
    stats: RunStats, flat: list[tuple[str, TrialRecord]], several: bool, seed: int
) -> tuple[list[str], list[str]]:
    """(the leaderboard section, the sections after any extra ones) of scored tasks."""
    ag = stats.agreement
    rho = "n/a" if ag.spearman is None else f"{ag.spearman:.2f} (p={ag.p_value:.2g})"
    leaderboard = [
        '<section id="leaderboard-section"><h2 id="leaderboard-title">Leaderboard</h2>'
        + _group_table(stats.by_prompt_model, "leaderboard", several),
        f'<p id="agreement">Judge vs deterministic score, Spearman ρ = {_esc(rho)} over {ag.n} '
        f"trials. {_esc(ag.note)}</p>",
        *(f"<p class='note'>{_esc(n)}</p>" for n in stats.notes),
        "</section>",
    ]
    if not flat:
        return leaderboard, []
    categories = task_categories(flat)
    paired = paired_section_html(
        paired_differences(flat, "prompt", several_runs=several, seed=seed),
        paired_differences(flat, "model", several_runs=several, seed=seed),
    )
    after = [
        f'<section id="paired"><h2>Paired comparisons</h2>{paired}</section>',
        f'<section id="heat"><h2>By task</h2>{heat_maps_html(flat, categories, several)}</section>',
        '<section id="tasks"><h2>Per task</h2>'
        + _group_table(stats.by_task, "per-task", several, categories=categories, links=_trial_links(flat))
        + "</section>",
        _plots_html(flat, several, categories),
    ]
    return leaderboard, after


def build_report(
    stores: list[RunStore],
    out: Path,
    *,
    title: str | None = None,
    extra_sections: list[tuple[str, str]] | None = None,
    seed: int = 0,
) -> Path:
    """Write the report of `stores` to `out`; `extra_sections` are (title, trusted html) pairs
    appended after the leaderboard (the evolution curve and prompt diff use it)."""
    loaded = [(s.run_id, s.path, s.trials(), s.evaluations()) for s in stores]
    stats: RunStats = compute_stats([(rid, trials, evs) for rid, _, trials, evs in loaded], seed=seed)
    several = len(stores) > 1
    flat = [(rid, r) for rid, _, trials, _ in loaded for r in trials]
    items = [(rid, r, evs.get(r.trial_id)) for rid, _, trials, evs in loaded for r in trials]
    dirs = {rid: path for rid, path, _, _ in loaded}
    title = title or "cellprompt report — " + ", ".join(s.run_id for s in stores)
    ranking = judge_ranking([(rid, trials, evs) for rid, _, trials, evs in loaded], seed=seed)
    # open analyses have no deterministic score: the judge's grade is their only measure
    only_open = bool(flat) and all(r.spec.task_kind == "open" for _, r in flat)
    sealed = not only_open
    about = (
        "open analyses, graded by the LLM judge only (no deterministic score)"
        if only_open
        else "scores are deterministic grader means (ungradable trials count 0)"
    )
    body: list[str] = [
        f"<header><h1>{_esc(title)}</h1><p>{len(flat)} trials in {len(stores)} run(s); "
        f"{about}; CIs are seeded 95% bootstrap intervals ({stats.bootstrap} resamples), "
        f"none from fewer than {MIN_N} values.</p></header>"
    ]
    warnings = task_set_warnings(flat, [s.run_id for s in stores], several)
    if warnings:
        body.append('<div id="task-sets" class="warning" role="alert"><strong>⚠ Different task sets.</strong>'
                    + "".join(f"<p>{_esc(w)}</p>" for w in warnings) + "</div>")
    links = [("judge-section", "Judge ranking")] if ranking or only_open else []
    if sealed:
        links += [("leaderboard", "Leaderboard"), ("paired", "Paired"), ("heat", "By task"),
                  ("tasks", "Per task"), ("plots", "Plots")]
    body.append(
        "<nav>"
        + "".join(f'<a href="#{a}">{t}</a>' for a, t in [*links, ("trials-section", "Trials")])
        + "</nav>"
    )
    if ranking or only_open:
        body.append(
            '<section id="judge-section"><h2>Judge ranking</h2>'
            + judge_section_html(ranking, several)
            + "</section>"
        )
    leaderboard, after = _sealed_sections(stats, flat, several, seed) if sealed else ([], [])
    body += leaderboard
    for sec_title, sec_html in extra_sections or []:
        body.append(f'<section class="extra"><h2>{_esc(sec_title)}</h2>{sec_html}</section>')
    body += after
    body.append(
        '<section id="trials-section"><h2>Trials</h2>'
        '<input id="filter" type="search" placeholder="filter by task, prompt, model, status…">'
        "<p class='hint'>Click a trial to read it; its number links to it.</p>"
        + _trial_rows(items, several) + "</section>"
    )
    data = "".join(
        f'<script type="application/json" id="trial-data-{i}">'
        f"{_json_script(trial_payload(rid, r, ev, dirs[rid]))}</script>"
        for i, (rid, r, ev) in enumerate(items)
    )
    parts = {
        "TITLE": _esc(title),
        "CSS": _asset("report.css") + "\n" + code_css("pre.code"),
        "BODY": "\n".join(body),
        "DATA": data,
        "JS": _asset("report.js"),
    }
    # one pass, so text inside the runs can never be mistaken for a placeholder
    page = re.sub(r"\{\{(TITLE|CSS|BODY|DATA|JS)\}\}", lambda m: parts[m.group(1)], _asset("report.html"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
