"""The judge leaderboard: ranking by mean grade, CIs over replicates, disagreement and failure flags."""

from __future__ import annotations

from cellprompt.export.judge_ranking import judge_ranking, judge_section_html
from cellprompt.records.run import Evaluation, JudgeSample, TrialRecord, TrialSpec


def _trial(prompt: str, rep: int) -> TrialRecord:
    spec = TrialSpec(
        trial_id=f"{prompt}-{rep}",
        prompt_id=prompt,
        prompt=prompt,
        task_id="open-x",
        task_ref="x.yaml",
        model="openai:m",
        replicate=rep,
        task_kind="open",
    )
    return TrialRecord(trial_id=spec.trial_id, spec=spec, status="submitted")


def _ev(trial_id: str, grades: list[float], ok: bool = True, judge: str = "anthropic:j") -> Evaluation:
    return Evaluation(
        trial_id=trial_id,
        judge_model=judge,
        ok=ok,
        samples=[JudgeSample(grade=g) for g in grades] if ok else [],
        grade_mean=sum(grades) / len(grades) if ok else None,
        disagreement=ok and max(grades) - min(grades) > 20,
    )


def test_ranked_by_judge_grade_with_replicate_cis_and_flags() -> None:
    trials = [_trial(p, r) for p in ("weak", "strong", "close") for r in range(3)]
    evs = {
        "weak-0": _ev("weak-0", [30, 35]),
        "weak-1": _ev("weak-1", [40, 40]),
        "weak-2": _ev("weak-2", [], ok=False),
        "strong-0": _ev("strong-0", [80, 82]),
        "strong-1": _ev("strong-1", [85, 85]),
        "strong-2": _ev("strong-2", [40, 90]),
        "close-0": _ev("close-0", [33, 35]),
        "close-1": _ev("close-1", [37, 37]),
        "close-2": _ev("close-2", [36, 36]),
    }
    rows = judge_ranking([("run", trials, evs)])
    assert [r.prompt_id for r in rows] == ["strong", "weak", "close"]
    strong, weak, _close = rows
    assert strong.grade_mean == (81 + 85 + 65) / 3 and strong.ci_low <= strong.grade_mean <= strong.ci_high
    assert strong.disagreements == 1 and strong.flagged and strong.separated_from_next
    assert weak.judged == 2 and weak.failed == 1  # a failed judgement is left out, not scored 0
    assert weak.separated_from_next is False  # weak and close overlap: the ranks are a coin toss
    html = judge_section_html(rows, several_runs=False)
    assert "judge disagrees on 1/3" in html and "1 judgement(s) failed" in html and "#2" in html
