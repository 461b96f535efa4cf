"""One self-contained HTML report of one or several runs.

No network at view time: CSS, JS and figures are inline. Trial bodies are JSON in
`<script type="application/json">` blocks that the browser neither parses nor lays
out until a reader opens that trial, which keeps a 500-trial report responsive.
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from cellprompt.export import plots
from cellprompt.export.judge_ranking import judge_ranking, judge_section_html
from cellprompt.export.notebook import image_base64
from cellprompt.grading.stats import GroupStats, RunStats, compute_stats
from cellprompt.records.outputs import clip, output_text
from cellprompt.records.run import Evaluation, ExecutionRecord, TrialRecord
from cellprompt.runs.store import RunStore

OUTPUT_LIMIT = 20_000


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _json_script(data: object) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can end the block early."""
    return json.dumps(data, default=str, separators=(",", ":")).replace("<", "\\u003c")


def _clip(text: str) -> str:
    return clip(text, OUTPUT_LIMIT)


def _outputs(ex: ExecutionRecord, run_dir: Path) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    shown = 0
    for out in ex.outputs:
        kind = out.get("type") or out.get("output_type")
        if kind == "stream":
            items.append(
                {"k": "stream", "name": str(out.get("name", "stdout")), "text": _clip(out.get("text", ""))}
            )
        elif kind == "error":
            items.append({"k": "error", "text": _clip(output_text(out))})
        elif kind in ("display_data", "execute_result"):
            data = out.get("data") or {}
            image = next((m for m in ("image/png", "image/jpeg") if m in data), None)
            b64 = image_base64(str(data[image]), run_dir) if image else None
            if image and b64:
                shown += 1
                items.append({"k": "img", "src": f"data:{image};base64,{b64}"})
            elif "text/plain" in data:
                items.append({"k": "text", "text": _clip(str(data["text/plain"]))})
    for rel in ex.images[shown:]:
        b64 = image_base64(rel, run_dir)
        if b64:
            items.append({"k": "img", "src": f"data:image/png;base64,{b64}"})
    return items


def _judge(ev: Evaluation | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    return {
        "ok": ev.ok,
        "model": ev.judge_model,
        "grade": ev.grade_mean,
        "sd": ev.grade_sd,
        "error": ev.error,
        "range": ev.grade_range,
        "disagreement": ev.disagreement,
        "figures": ev.figures_shown,
        "cost": ev.usage.cost_usd,
        "samples": [s.model_dump() for s in ev.samples],
    }


def trial_payload(run_id: str, record: TrialRecord, ev: Evaluation | None, run_dir: Path) -> dict[str, Any]:
    """Everything a reader sees when opening one trial."""
    return {
        "id": record.trial_id,
        "run": run_id,
        "task": record.spec.task_id,
        "prompt_id": record.spec.prompt_id,
        "model": record.spec.model,
        "status": record.status,
        "limit": record.limit,
        "error": record.error,
        "score": record.score,
        "passed": record.passed,
        "cost": record.usage.cost_usd,
        "tokens": record.usage.input_tokens + record.usage.output_tokens,
        "wall": record.wall_s,
        "system_prompt": record.spec.prompt,
        "first_message": record.first_message,
        "grades": [g.model_dump(include={"grader", "score", "passed", "reasoning"}) for g in record.grades],
        "judge": _judge(ev),
        "turns": [
            {
                "text": t.assistant_text,
                "execs": [
                    {
                        "code": ex.code,
                        "status": ex.final_status,
                        "count": ex.execution_count,
                        "message": ex.message,
                        "outputs": _outputs(ex, run_dir),
                    }
                    for ex in t.executions
                ],
            }
            for t in record.turns
        ],
        "answer": json.dumps(record.answer, indent=2, default=str) if record.answer is not None else None,
        "kind": record.spec.task_kind,
        "report": record.report,
        "report_source": record.report_source,
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _group_table(rows: list[GroupStats], table_id: str, several_runs: bool, with_task: bool) -> str:
    heads = (
        (["run"] if several_runs else [])
        + ["prompt", "model"]
        + (["task"] if with_task else [])
        + ["trials", "pass rate", "score", "95% CI", "judge", "cost $", "tokens", "time s"]
    )
    out = [f'<table id="{table_id}" class="grid"><thead><tr>']
    out += [f"<th>{_esc(h)}</th>" for h in heads]
    out.append("</tr></thead><tbody>")
    for g in rows:
        judge = "–" if g.judge_mean is None else f"{g.judge_mean:.1f} ± {g.judge_sd or 0:.1f} (n={g.judged})"
        cells = (
            ([g.run_id] if several_runs else [])
            + [g.prompt_id, g.model]
            + ([g.task_id] if with_task else [])
            + [
                g.trials,
                f"{g.pass_rate:.0%}",
                _fmt(g.score_mean, 3),
                f"[{_fmt(g.score_ci_low, 3)}, {_fmt(g.score_ci_high, 3)}]",
                judge,
                _fmt(g.cost_usd, 4),
                g.input_tokens + g.output_tokens,
                _fmt(g.wall_s_mean, 1),
            ]
        )
        out.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _categories(trials: list[tuple[str, TrialRecord]]) -> dict[str, str]:
    """Task category by task ref; a task that no longer loads counts as 'other'."""
    found: dict[str, str] = {}
    for _, r in trials:
        ref = r.spec.task_ref
        if ref in found:
            continue
        try:
            from cellprompt.tasks import load_task

            found[ref] = load_task(ref).metadata.category
        except Exception:
            found[ref] = "other"
    return found


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
        judge = "failed" if ev is not None and not ev.ok else _fmt(ev.grade_mean if ev else None, 1)
        judge += " ⚠" if ev is not None and ev.disagreement else ""
        cells = [
            i + 1,
            *([run_id] if several_runs else []),
            r.spec.task_id,
            r.spec.prompt_id,
            r.spec.model,
            r.spec.replicate,
            _status(r),
            _fmt(r.score, 3),
            judge,
            _fmt(r.usage.cost_usd, 4),
        ]
        out.append(
            f'<tr class="trial-row" data-index="{i}" data-trial-id="{_esc(r.trial_id)}" tabindex="0">'
            + "".join(f"<td>{_esc(c)}</td>" for c in cells)
            + "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _asset(name: str) -> str:
    return (resources.files("cellprompt.export") / "assets" / name).read_text(encoding="utf-8")


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
        f"{about}; CIs are seeded 95% bootstrap intervals ({stats.bootstrap} resamples).</p></header>"
    ]
    links = [("judge-section", "Judge ranking")] if ranking or only_open else []
    if sealed:
        links += [("leaderboard", "Leaderboard"), ("tasks", "Per task"), ("plots", "Plots")]
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
    if sealed:
        body.append(
            '<section id="leaderboard-section"><h2 id="leaderboard-title">Leaderboard</h2>'
            + _group_table(stats.by_prompt_model, "leaderboard", several, with_task=False)
        )
        ag = stats.agreement
        rho = "n/a" if ag.spearman is None else f"{ag.spearman:.2f} (p={ag.p_value:.2g})"
        body.append(
            f'<p id="agreement">Judge vs deterministic score, Spearman ρ = {_esc(rho)} over {ag.n} '
            f"trials. {_esc(ag.note)}</p>"
        )
        body += [f"<p class='note'>{_esc(n)}</p>" for n in stats.notes]
        body.append("</section>")
    for sec_title, sec_html in extra_sections or []:
        body.append(f'<section class="extra"><h2>{_esc(sec_title)}</h2>{sec_html}</section>')
    if sealed:
        body.append(
            '<section id="tasks"><h2>Per task</h2>'
            + _group_table(stats.by_task, "per-task", several, with_task=True)
            + "</section>"
        )
    if flat and sealed:
        figs = [
            ("Score distribution", plots.score_distribution(flat, several)),
            ("Cost vs score", plots.cost_vs_score(flat, several)),
            ("Pass rate per task category", plots.pass_rate_by_category(flat, _categories(flat))),
        ]
        body.append(
            '<section id="plots"><h2>Plots</h2>'
            + "".join(
                f'<figure><img class="plot" alt="{_esc(t)}" src="{src}">'
                f"<figcaption>{_esc(t)}</figcaption></figure>"
                for t, src in figs
            )
            + "</section>"
        )
    body.append(
        '<section id="trials-section"><h2>Trials</h2>'
        '<input id="filter" type="search" placeholder="filter by task, prompt, model, status…">'
        "<p class='hint'>Click a trial to read it.</p>" + _trial_rows(items, several) + "</section>"
    )
    data = "".join(
        f'<script type="application/json" id="trial-data-{i}">'
        f"{_json_script(trial_payload(rid, r, ev, dirs[rid]))}</script>"
        for i, (rid, r, ev) in enumerate(items)
    )
    parts = {
        "TITLE": _esc(title),
        "CSS": _asset("report.css"),
        "BODY": "\n".join(body),
        "DATA": data,
        "JS": _asset("report.js"),
    }
    # one pass, so text inside the runs can never be mistaken for a placeholder
    page = re.sub(r"\{\{(TITLE|CSS|BODY|DATA|JS)\}\}", lambda m: parts[m.group(1)], _asset("report.html"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
