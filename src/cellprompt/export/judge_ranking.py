"""Prompts ranked by the LLM judge's grade, with CIs over replicates and the judge's disagreement.

Open analyses have no deterministic score: the judge's grade is the only
measure, so a reader must see how uncertain it is twice over — across
replicates (the bootstrap CI of the mean trial grade) and within one trial
(how far the judge's own samples disagree).
"""

from __future__ import annotations

import html
import statistics
from collections import defaultdict

from pydantic import BaseModel, Field

from cellprompt.export.cells import ci_text, fmt
from cellprompt.grading.judge import DISAGREEMENT_POINTS
from cellprompt.grading.stats import bootstrap_ci
from cellprompt.records.run import Evaluation, TrialRecord

RunData = tuple[str, list[TrialRecord], dict[str, Evaluation]]


class JudgeRow(BaseModel):
    """One (run, prompt, model): its judged trials and what the judge made of them."""

    rank: int = 0
    run_id: str
    prompt_id: str
    model: str
    trials: int
    judged: int
    failed: int  # judgements that never produced a valid verdict: left out of the mean
    grade_mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sample_sd: float | None = None  # mean within-trial spread of the judge's samples
    disagreements: int = 0  # trials whose samples span more than the judge's tolerance
    judges: list[str] = Field(default_factory=list)
    criteria: dict[str, float] = Field(default_factory=dict)  # mean 0-10 score per criterion
    separated_from_next: bool | None = None  # its CI lies above the next row's CI
    cost_usd: float = 0.0

    @property
    def flagged(self) -> bool:
        return self.disagreements > 0 or len(self.judges) > 1


def judge_ranking(runs: list[RunData], *, seed: int = 0) -> list[JudgeRow]:
    """Rows with at least one judged trial, best mean grade first."""
    rows: list[JudgeRow] = []
    for run_id, trials, evaluations in runs:
        groups: dict[tuple[str, str], list[TrialRecord]] = defaultdict(list)
        for r in trials:
            groups[(r.spec.prompt_id, r.spec.model)].append(r)
        for (prompt_id, model), records in sorted(groups.items()):
            evs = [e for r in records if (e := evaluations.get(r.trial_id)) is not None]
            ok = [e for e in evs if e.ok and e.grade_mean is not None]
            if not ok:
                continue
            grades = [float(e.grade_mean) for e in ok]  # type: ignore[arg-type]
            low, high = bootstrap_ci(grades, seed=seed)
            per_criterion: dict[str, list[float]] = defaultdict(list)
            for e in ok:
                for s in e.samples:
                    for c in s.criteria:
                        per_criterion[c.name].append(c.score)
            rows.append(JudgeRow(
                run_id=run_id, prompt_id=prompt_id, model=model, trials=len(records),
                judged=len(ok), failed=len(evs) - len(ok), grade_mean=statistics.fmean(grades),
                ci_low=low, ci_high=high,
                sample_sd=statistics.fmean(e.grade_sd or 0.0 for e in ok),
                disagreements=sum(e.disagreement for e in ok),
                judges=sorted({e.judge_model for e in ok}),
                criteria={k: statistics.fmean(v) for k, v in per_criterion.items()},
                cost_usd=sum(r.usage.cost_usd for r in records) + sum(e.usage.cost_usd for e in evs),
            ))
    rows.sort(key=lambda r: (-(r.grade_mean or 0.0), r.run_id, r.prompt_id, r.model))
    for i, row in enumerate(rows):
        row.rank = i + 1
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if nxt is not None and None not in (row.ci_low, nxt.ci_high) and row.judged > 1:
            row.separated_from_next = row.ci_low > nxt.ci_high  # type: ignore[operator]
    return rows


def judge_section_html(rows: list[JudgeRow], several_runs: bool) -> str:
    """The judge leaderboard table and its notes (trusted HTML for the report)."""
    if not rows:
        return "<p class='note'>No trial has a judge grade yet: run <code>cellprompt evaluate RUN</code>.</p>"
    criteria = list(dict.fromkeys(name for r in rows for name in r.criteria))
    heads = (["#"] + (["run"] if several_runs else []) + ["prompt", "model", "judged", "grade",
             "95% CI (replicates)", "judge spread (sd)", "flag"] + criteria + ["cost $"])
    out = ['<table id="judge-ranking" class="grid"><thead><tr>']
    out += [f"<th>{html.escape(h)}</th>" for h in heads]
    out.append("</tr></thead><tbody>")
    for r in rows:
        flags = []
        if r.disagreements:
            flags.append(f"⚠ judge disagrees on {r.disagreements}/{r.judged}")
        if len(r.judges) > 1:
            flags.append("⚠ several judges: " + ", ".join(r.judges))
        if r.failed:
            flags.append(f"{r.failed} judgement(s) failed")
        cells = ([str(r.rank)] + ([r.run_id] if several_runs else [])
                 + [r.prompt_id, r.model, f"{r.judged}/{r.trials}", fmt(r.grade_mean, 1),
                    ci_text(r.ci_low, r.ci_high, r.judged, digits=1), fmt(r.sample_sd, 1),
                    "; ".join(flags) or "–"]
                 + [fmt(r.criteria.get(c), 1) for c in criteria] + [fmt(r.cost_usd, 4)])
        cls = ' class="flagged"' if r.flagged else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    overlap = [r for r in rows if r.separated_from_next is False]
    notes = ["Grades are 0–100, the mean over the judge's samples of each trial; the CI is a seeded "
             "95% bootstrap over the prompt's trials (replicates and datasets)."]
    if overlap:
        notes.append("Ranks whose CIs overlap the next row's are not distinguishable: "
                     + ", ".join(f"#{r.rank}" for r in overlap) + ". More replicates would tell.")
    if any(r.disagreements for r in rows):
        notes.append(f"⚠ marks trials whose judge samples span more than {DISAGREEMENT_POINTS:.0f} "
                     "points: read those trials, or judge them with more samples.")
    out += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    return "".join(out)
