from __future__ import annotations

import math

import numpy as np
import pytest

from cellprompt.grading.stats import agreement, bootstrap_ci, compute_stats
from cellprompt.llm.base import Usage
from cellprompt.records.run import Evaluation, JudgeSample, TrialRecord, TrialSpec


def trial(i: int, prompt: str, model: str, task: str, score: float | None, cost: float = 0.01) -> TrialRecord:
    spec = TrialSpec(trial_id=f"t{i}", prompt_id=prompt, prompt="", task_id=task, task_ref=task, model=model)
    return TrialRecord(
        trial_id=f"t{i}",
        spec=spec,
        status="submitted" if score is not None else "error",
        score=score,
        passed=score is not None and score >= 0.5,
        wall_s=float(i),
        usage=Usage(input_tokens=100, output_tokens=10, cost_usd=cost),
    )


def ev(i: int, grade: float | None) -> Evaluation:
    if grade is None:
        return Evaluation(trial_id=f"t{i}", judge_model="j", ok=False, error="not JSON")
    return Evaluation(
        trial_id=f"t{i}",
        judge_model="j",
        ok=True,
        samples=[JudgeSample(grade=grade)],
        grade_mean=grade,
        grade_sd=0.0,
        usage=Usage(cost_usd=0.001),
    )


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    values = [0.0, 0.2, 0.5, 0.9, 1.0, 0.7]
    low, high = bootstrap_ci(values, seed=1)
    assert low < np.mean(values) < high and low >= 0 and high <= 1
    assert bootstrap_ci(values, seed=1) == (low, high)
    assert bootstrap_ci(values, seed=2) != (low, high)
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_groups_pass_rates_judge_and_costs() -> None:
    trials = [
        trial(0, "a", "m1", "x", 1.0),
        trial(1, "a", "m1", "x", 0.0),
        trial(2, "a", "m1", "y", None),
        trial(3, "b", "m1", "x", 0.5),
        trial(4, "b", "m1", "y", 0.9),
    ]
    evals = {e.trial_id: e for e in [ev(0, 90), ev(1, 20), ev(2, None), ev(3, 60), ev(4, 80)]}
    stats = compute_stats([("run", trials, evals)], seed=0)
    best, worst = stats.by_prompt_model
    assert (best.prompt_id, worst.prompt_id) == ("b", "a")  # sorted by mean score
    assert worst.trials == 3 and worst.passed == 1 and worst.pass_rate == pytest.approx(1 / 3)
    assert worst.score_mean == pytest.approx(1 / 3)  # the errored trial counts 0
    assert (
        worst.judged == 2
        and worst.judge_mean == 55
        and worst.judge_sd == pytest.approx(np.std([90, 20], ddof=1))
    )
    assert worst.cost_usd == pytest.approx(0.03 + 0.002)  # agent + judge
    assert worst.input_tokens == 300 and worst.wall_s_mean == pytest.approx(1.0)
    keys = [(g.prompt_id, g.task_id) for g in stats.by_task]
    assert keys == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    assert stats.failed_judgements == 1 and "1 judgement(s) failed" in stats.notes[0]
    assert stats.agreement.n == 4 and stats.agreement.spearman == pytest.approx(1.0)
    assert stats.model_dump_json()  # serialisable for --format json


def test_agreement_edge_cases() -> None:
    assert agreement([(1, 1), (2, 2)]).spearman is None
    assert "all equal" in agreement([(50, 0.1), (50, 0.5), (50, 0.9)]).note
    bad = agreement([(90, 0.1), (50, 0.5), (10, 0.9), (20, 0.8)])
    assert bad.spearman is not None and bad.spearman < 0 and "caution" in bad.note


def test_runs_are_kept_apart() -> None:
    stats = compute_stats(
        [("r1", [trial(0, "a", "m", "x", 1.0)], {}), ("r2", [trial(1, "a", "m", "x", 0.0)], {})]
    )
    assert [(g.run_id, g.score_mean) for g in stats.by_prompt_model] == [("r1", 1.0), ("r2", 0.0)]
    assert stats.by_prompt_model[0].judge_mean is None
