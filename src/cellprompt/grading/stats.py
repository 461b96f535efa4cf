"""Leaderboard statistics: pass rates, bootstrap CIs, judge spread and judge-vs-grader agreement.

A mean over three trials says little; the bootstrap CI says how little. The rank
correlation between judge grades and deterministic scores tells a user whether the
judge can be trusted on tasks that have no ground truth.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel, Field

from cellprompt.records.run import Evaluation, TrialRecord

SCHEMA_VERSION = 1
N_BOOT = 2000


class GroupStats(BaseModel):
    run_id: str
    prompt_id: str
    model: str
    task_id: str | None = None  # None: aggregated over every task
    trials: int
    passed: int
    pass_rate: float
    score_mean: float
    score_ci_low: float
    score_ci_high: float
    judged: int = 0
    judge_mean: float | None = None
    judge_sd: float | None = None
    cost_usd: float = 0.0
    cost_unknown: bool = False  # a model (agent or judge) had no price: cost_usd counts it as 0
    input_tokens: int = 0
    output_tokens: int = 0
    wall_s_mean: float = 0.0


class Agreement(BaseModel):
    """Spearman rank correlation of judge grade vs deterministic score over trials with both."""

    n: int
    spearman: float | None = None
    p_value: float | None = None
    note: str = ""


class RunStats(BaseModel):
    schema_version: int = SCHEMA_VERSION
    runs: list[str]
    by_prompt_model: list[GroupStats]
    by_task: list[GroupStats]
    agreement: Agreement
    failed_judgements: int = 0
    seed: int = 0
    bootstrap: int = N_BOOT
    notes: list[str] = Field(default_factory=list)


def bootstrap_ci(
    values: list[float], *, seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; seeded so a report is reproducible."""
    if not values:
        return (math.nan, math.nan)
    arr = np.asarray(values, dtype=float)
    if len(arr) == 1 or np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0])) if len(arr) == 1 else (float(arr.mean()), float(arr.mean()))
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n_boot, len(arr)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def trial_score(record: TrialRecord) -> float:
    """An ungradable trial (crashed, no answer) counts as 0: it failed the task."""
    return record.score if record.score is not None else 0.0


def _group(
    run_id: str,
    key: tuple[str, str, str | None],
    records: list[TrialRecord],
    evaluations: dict[str, Evaluation],
    seed: int,
) -> GroupStats:
    scores = [trial_score(r) for r in records]
    low, high = bootstrap_ci(scores, seed=seed)
    grades = [
        ev.grade_mean
        for r in records
        if (ev := evaluations.get(r.trial_id)) and ev.ok and ev.grade_mean is not None
    ]
    passed = sum(r.passed for r in records)
    return GroupStats(
        run_id=run_id,
        prompt_id=key[0],
        model=key[1],
        task_id=key[2],
        trials=len(records),
        passed=passed,
        pass_rate=passed / len(records),
        score_mean=statistics.fmean(scores),
        score_ci_low=low,
        score_ci_high=high,
        judged=len(grades),
        judge_mean=statistics.fmean(grades) if grades else None,
        judge_sd=statistics.stdev(grades) if len(grades) > 1 else (0.0 if grades else None),
        cost_usd=sum(r.usage.cost_usd for r in records)
        + sum(evaluations[r.trial_id].usage.cost_usd for r in records if r.trial_id in evaluations),
        cost_unknown=any(r.usage.cost_unknown for r in records)
        or any(evaluations[r.trial_id].usage.cost_unknown for r in records if r.trial_id in evaluations),
        input_tokens=sum(r.usage.input_tokens for r in records),
        output_tokens=sum(r.usage.output_tokens for r in records),
        wall_s_mean=statistics.fmean(r.wall_s for r in records),
    )


def agreement(pairs: Iterable[tuple[float, float]]) -> Agreement:
    pairs = list(pairs)
    if len(pairs) < 3:
        return Agreement(n=len(pairs), note="fewer than 3 trials have both a judge grade and a score")
    xs, ys = zip(*pairs, strict=True)
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        return Agreement(n=len(pairs), note="judge grades or scores are all equal; no ranking to compare")
    from scipy.stats import spearmanr

    result = spearmanr(xs, ys)
    rho, p = float(result.statistic), float(result.pvalue)
    note = (
        "judge agrees with the graders"
        if rho >= 0.5
        else "judge disagrees with the graders: treat its grades with caution"
    )
    return Agreement(n=len(pairs), spearman=rho, p_value=p, note=note)


def compute_stats(
    runs: list[tuple[str, list[TrialRecord], dict[str, Evaluation]]], *, seed: int = 0
) -> RunStats:
    """Statistics of one or several runs; groups never mix runs so runs can be compared."""
    by_pm: list[GroupStats] = []
    by_task: list[GroupStats] = []
    pairs: list[tuple[float, float]] = []
    failed = 0
    for run_id, trials, evaluations in runs:
        pm: dict[tuple[str, str, str | None], list[TrialRecord]] = defaultdict(list)
        pmt: dict[tuple[str, str, str | None], list[TrialRecord]] = defaultdict(list)
        for r in trials:
            pm[(r.spec.prompt_id, r.spec.model, None)].append(r)
            pmt[(r.spec.prompt_id, r.spec.model, r.spec.task_id)].append(r)
            ev = evaluations.get(r.trial_id)
            if ev is not None and ev.ok and ev.grade_mean is not None and r.score is not None:
                pairs.append((ev.grade_mean, r.score))
        failed += sum(1 for r in trials if (ev := evaluations.get(r.trial_id)) and not ev.ok)
        by_pm += [_group(run_id, k, v, evaluations, seed) for k, v in sorted(pm.items(), key=str)]
        by_task += [_group(run_id, k, v, evaluations, seed) for k, v in sorted(pmt.items(), key=str)]
    by_pm.sort(key=lambda g: (-g.score_mean, -g.pass_rate, g.run_id, g.prompt_id, g.model))
    notes = [f"{failed} judgement(s) failed and are left out of judge means"] if failed else []
    return RunStats(
        runs=[r[0] for r in runs],
        by_prompt_model=by_pm,
        by_task=by_task,
        agreement=agreement(pairs),
        failed_judgements=failed,
        seed=seed,
        notes=notes,
    )
