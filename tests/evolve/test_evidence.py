"""What the reflection model is shown about a trial, and how a trial is scored."""

from __future__ import annotations

from cellprompt.evolve.evidence import fitness, render_trial
from cellprompt.grading.base import GradeResult
from cellprompt.records.run import (
    Evaluation,
    ExecutionRecord,
    JudgeCriterion,
    JudgeSample,
    TrialRecord,
    TrialSpec,
    Turn,
)


def _record() -> TrialRecord:
    error = {
        "type": "error",
        "ename": "KeyError",
        "evalue": "'percent_mito'",
        "traceback": [
            "\x1b[31mTraceback\x1b[0m",
            *[f"frame {i}" for i in range(30)],
            "KeyError: 'percent_mito'",
        ],
    }
    long_code = "x = 1\n" * 2000 + "adata.obs['percent_mito']"
    return TrialRecord(
        trial_id="t1",
        status="submitted",
        first_message="How many cells have > 2% mitochondrial reads?",
        spec=TrialSpec(trial_id="t1", prompt_id="p", prompt="P", task_id="qc", task_ref="qc", model="m"),
        grades=[
            GradeResult(
                grader="numeric_tolerance",
                score=0.0,
                passed=False,
                reasoning="n_cells_high_mito: 0 vs expected 188 (outside ±2)",
            ),
            GradeResult(grader="format", score=1.0, passed=True),
        ],
        score=0.5,
        answer={"n_cells_high_mito": 0},
        turns=[
            Turn(
                index=0,
                executions=[
                    ExecutionRecord(code="import scanpy as sc", outputs=[], final_status="ok"),
                    ExecutionRecord(code=long_code, outputs=[error], final_status="error"),
                ],
            )
        ],
    )


def _evaluation(grade: float = 40.0) -> Evaluation:
    return Evaluation(
        trial_id="t1",
        judge_model="j",
        ok=True,
        grade_mean=grade,
        samples=[
            JudgeSample(
                grade=grade,
                comments="Thresholded a fraction as a percentage.",
                criteria=[JudgeCriterion(name="correctness", score=2, comment="wrong threshold unit")],
            )
        ],
    )


def test_evidence_holds_failed_graders_judge_comments_error_tail_and_code() -> None:
    text = render_trial(_record(), _evaluation(), 0.5)
    assert "numeric_tolerance (score 0.00): did not pass" in text and "188" not in text
    assert "Passed graders: format" in text
    assert "- correctness 2/10: wrong threshold unit" in text
    assert "Judge comments: Thresholded a fraction as a percentage." in text
    assert "ERROR KeyError: 'percent_mito'" in text and "frame 29" in text and "frame 5" not in text
    assert "\x1b[" not in text  # colour codes stripped
    assert "adata.obs['percent_mito']" in text and "characters omitted" in text  # head and tail of long code
    assert '"n_cells_high_mito": 0' in text
    assert "How many cells have > 2% mitochondrial reads?" in text


def test_score_blends_the_judge_only_when_asked_and_ok() -> None:
    record = _record()
    assert fitness(record, None, 0.5) == 0.5
    assert fitness(record, _evaluation(40.0), 0.0) == 0.5
    assert fitness(record, _evaluation(40.0), 0.5) == 0.45
    failed = Evaluation(trial_id="t1", judge_model="j", ok=False, error="no verdict")
    assert fitness(record, failed, 0.5) == 0.5
    record.score = None  # an ungradable trial scores zero, never crashes the search
    assert fitness(record, None, 0.0) == 0.0


def test_evidence_says_what_was_wrong_never_the_expected_value() -> None:
    """Real graders' messages quote the truth; the evidence rebuilt from them must not."""
    from cellprompt.grading.registry import grade

    numeric = grade({"type": "numeric_tolerance", "config": {"ground_truth": {"n_cells_high_mito": 188},
                                                             "tolerance": 2}}, {"n_cells_high_mito": 0})
    choice = grade({"type": "multiple_choice", "config": {"correct_answer": "C"}}, {"answer": "D"})
    markers = grade({"type": "marker_gene_precision_recall",
                     "config": {"canonical_markers": ["CD79A", "MS4A1", "CD19"], "answer_field": "markers"}},
                    {"markers": ["CD3E", "CD79A"]})
    missing = grade({"type": "numeric_tolerance", "config": {"ground_truth": {"n_pcs": 37}}}, {})
    assert "188" in numeric.reasoning and "C" in choice.reasoning  # the graders do quote it
    record = _record().model_copy(update={"grades": [numeric, choice, markers, missing]})
    text = render_trial(record, None, 0.0)
    assert "n_cells_high_mito: outside the tolerance" in text
    assert "answer: not the right choice" in text
    assert "n_pcs: missing" in text
    assert "marker_gene_precision_recall (score" in text
    for truth in ("188", "190", "186", "is not C", "MS4A1", "CD19", "37"):
        assert truth not in text, truth
    right = grade({"type": "multiple_choice", "config": {"correct_answer": "C"}}, {"answer": "C"})
    record = _record().model_copy(update={"grades": [right, numeric], "answer": {"answer": "C", "n": 0}})
    text = render_trial(record, None, 0.5)
    assert '"answer": "[right, withheld]"' in text and '"C"' not in text  # a right answer is the truth


def test_an_unknown_graders_text_is_shown_with_truth_values_withheld() -> None:
    custom = GradeResult(grader="my_check", score=0.0, passed=False, metrics={"expected_label": "Gfi1"},
                         reasoning="picked Irf8 but the factor is Gfi1")
    text = render_trial(_record().model_copy(update={"grades": [custom]}), None, 0.0)
    assert "picked Irf8 but the factor is [withheld]" in text and "Gfi1" not in text


def test_reflection_sees_the_worst_trials_then_the_best_under_both_strategies() -> None:
    from cellprompt.evolve.evidence import EVIDENCE_TRIALS, select_evidence

    scores = [0.5, 0.9, 0.1, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4]
    chosen = select_evidence(scores, float)
    assert chosen == [*sorted(scores)[:EVIDENCE_TRIALS], 0.9]
    assert select_evidence(scores[:3], float) == [0.1, 0.5, 0.9], "few trials: each once"
