"""Paired differences: is prompt A better than prompt B on the same tasks and replicates?

Comparing two leaderboard means mixes the prompts' difference with the tasks'
difficulty and with which tasks each ran. Pairing trials that differ only in the
compared factor (same task, replicate and the other factor) removes both; the CI is
the seeded percentile bootstrap of the mean pair difference (resampling pairs), and
with fewer than `cells.MIN_N` pairs the report says so instead of showing one.
"""

from __future__ import annotations

import html
import statistics
from collections import defaultdict
from itertools import combinations
from typing import Literal

from pydantic import BaseModel

from cellprompt.export.cells import MIN_N, ci_text, fmt
from cellprompt.grading.stats import bootstrap_ci, trial_score
from cellprompt.records.run import TrialRecord

Factor = Literal["prompt", "model"]


class PairedDiff(BaseModel):
    factor: Factor
    better: str  # the arm with the higher mean over the shared pairs (delta >= 0)
    worse: str
    held: list[str]  # the other factor's values the pairs were taken over
    pairs: int
    tasks: int
    delta: float  # mean of (better - worse) over the pairs
    ci_low: float | None = None  # None: fewer than MIN_N pairs
    ci_high: float | None = None
    wins: int = 0  # pairs the better arm won, tied, lost
    ties: int = 0
    losses: int = 0

    @property
    def verdict(self) -> str:
        if self.ci_low is None:
            return f"too few pairs to tell (n={self.pairs}, a CI needs {MIN_N})"
        if self.ci_low > 0:
            return f"{self.better} better"
        return "no clear difference (CI includes 0)"


Arm = tuple[str, str]  # (run id, or "" in a one-run report; the prompt or model)


def _arms(
    trials: list[tuple[str, TrialRecord]], factor: Factor, several_runs: bool
) -> dict[Arm, dict[tuple[str, str, int], list[float]]]:
    """arm -> (other factor, task, replicate) -> scores; runs stay apart when there are several."""
    arms: dict[Arm, dict[tuple[str, str, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    for run_id, r in trials:
        value, other = r.spec.prompt_id, r.spec.model
        if factor == "model":
            value, other = other, value
        arm = (run_id if several_runs else "", value)
        arms[arm][(other, r.spec.task_id, r.spec.replicate)].append(trial_score(r))
    return arms


def _label(arm: Arm) -> str:
    return f"{arm[0]}: {arm[1]}" if arm[0] else arm[1]


def paired_differences(
    trials: list[tuple[str, TrialRecord]], factor: Factor, *, several_runs: bool, seed: int = 0
) -> list[PairedDiff]:
    """Every two arms (different prompts, or models) that share at least one (task, replicate, other)."""
    arms = _arms(trials, factor, several_runs)
    out: list[PairedDiff] = []
    for a, b in combinations(sorted(arms), 2):
        if a[1] == b[1]:
            continue  # the same prompt (model) in two runs: a run comparison, not this one
        shared = sorted(set(arms[a]) & set(arms[b]))
        if not shared:
            continue
        diffs = [statistics.fmean(arms[a][k]) - statistics.fmean(arms[b][k]) for k in shared]
        if statistics.fmean(diffs) < 0:
            a, b, diffs = b, a, [-d for d in diffs]
        low, high = bootstrap_ci(diffs, seed=seed) if len(diffs) >= MIN_N else (None, None)
        out.append(PairedDiff(
            factor=factor, better=_label(a), worse=_label(b), held=sorted({k[0] for k in shared}),
            pairs=len(diffs), tasks=len({k[1] for k in shared}), delta=statistics.fmean(diffs),
            ci_low=low, ci_high=high, wins=sum(d > 0 for d in diffs), ties=sum(d == 0 for d in diffs),
            losses=sum(d < 0 for d in diffs),
        ))
    out.sort(key=lambda d: (-d.delta, d.better, d.worse))
    return out


def paired_section_html(prompts: list[PairedDiff], models: list[PairedDiff]) -> str:
    """The two tables (prompts, models) with their notes; trusted HTML for the report."""
    if not prompts and not models:
        return ("<p class='note'>No two prompts or models ran on the same task and replicate: "
                "there is nothing to pair.</p>")
    out: list[str] = []
    for title, rows, held in (("Prompts", prompts, "models"), ("Models", models, "prompts")):
        if not rows:
            continue
        heads = ["better", "worse", "difference", "95% CI (paired bootstrap)", "pairs", "tasks",
                 "won / tied / lost", held, "verdict"]
        out.append(f'<h3>{title}</h3><table id="paired-{title.lower()}" class="grid"><thead><tr>')
        out += [f"<th>{html.escape(h)}</th>" for h in heads]
        out.append("</tr></thead><tbody>")
        for d in rows:
            cells = [d.better, d.worse, f"+{fmt(d.delta, 3)}", ci_text(d.ci_low, d.ci_high, d.pairs),
                     str(d.pairs), str(d.tasks), f"{d.wins} / {d.ties} / {d.losses}", ", ".join(d.held),
                     d.verdict]
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
    out.append(
        "<p class='note'>A pair is two trials that differ only in the compared factor: same task, "
        "replicate and the other factor (the model when prompts are compared, the prompt when "
        "models are). The difference is the mean over pairs; the CI resamples pairs (seeded); "
        f"with fewer than {MIN_N} pairs no CI is given.</p>"
    )
    return "".join(out)
