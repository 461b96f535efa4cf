"""multiple_choice, label_set_jaccard, marker_gene_precision_recall, distribution_comparison."""

from __future__ import annotations

import pytest

from cellprompt.errors import GradingError
from cellprompt.grading import grade

MC = {"type": "multiple_choice", "config": {"correct_answer": "B"}}


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ({"answer": "B"}, True),
        ({"answer": " b "}, True),
        ({"answer": "C"}, False),
        ({"answer": None}, False),
        ({}, False),
        ({"answer": ["B"]}, False),
        (None, False),
    ],
)
def test_multiple_choice(answer: dict | None, passed: bool) -> None:
    assert grade(MC, answer).passed is passed


def test_multiple_choice_several_right_answers_and_bad_config() -> None:
    g = {"type": "multiple_choice", "config": {"correct_answers": ["A", "D"], "answer_field": "c"}}
    assert grade(g, {"c": "d"}).passed and not grade(g, {"c": "B"}).passed
    with pytest.raises(GradingError, match="correct_answer"):
        grade({"type": "multiple_choice", "config": {}}, {"answer": "A"})


def jac(**config: object) -> dict:
    return {"type": "label_set_jaccard", "config": config}


def test_jaccard_scbench_config() -> None:
    g = jac(ground_truth_labels=["T cell", "B cell", "NK"], scoring={"pass_threshold": 0.5})
    r = grade(g, {"cell_types_predicted": ["t cell", "B cell", "Monocyte"]})
    assert r.metrics["jaccard_index"] == pytest.approx(2 / 4)
    assert r.passed and r.metrics["false_positives"] == ["monocyte"]
    assert not grade(jac(ground_truth_labels=["A"], threshold=0.9), {"labels": ["A", "B"]}).passed


def test_jaccard_from_withheld_obs_and_bad_answers() -> None:
    g = jac(truth_obs="ct", answer_field="labels", threshold=1.0)
    truth = {"obs": {"ct": {"c1": "T", "c2": "B", "c3": "T", "c4": None}}}
    assert grade(g, {"labels": ["B", "T"]}, truth).passed
    assert not grade(g, {"labels": "B,T"}, truth).passed
    assert not grade(g, {}, truth).passed
    with pytest.raises(GradingError, match="withheld truth"):
        grade(g, {"labels": ["B"]})


def mg(**config: object) -> dict:
    return {"type": "marker_gene_precision_recall", "config": config}


def test_marker_precision_recall_at_k_case_insensitive() -> None:
    g = mg(
        canonical_markers=["CD3D", "CD3E", "CD2", "IL7R"],
        k=4,
        scoring={"pass_thresholds": {"recall_at_k": 0.5, "precision_at_k": 0.5}},
    )
    r = grade(g, {"top_marker_genes": ["cd3d", "Cd3e", "LYZ", "GNLY", "CD2"]})
    assert r.metrics["precision_at_k"] == 0.5 and r.metrics["recall_at_k"] == 0.5
    assert r.passed  # CD2 is outside the top 4
    assert r.metrics["true_positives"] == ["cd3d", "cd3e"]
    assert not grade(g, {"top_marker_genes": ["CD3D", "LYZ", "GNLY", "MS4A1"]}).passed


def test_marker_duplicates_do_not_count_twice_and_short_lists_are_penalised() -> None:
    g = mg(canonical_markers=["A", "B"], k=4, thresholds={"precision_at_k": 0.5})
    r = grade(g, {"top_marker_genes": ["A", "a", "A"]})
    assert r.metrics["precision_at_k"] == 0.25 and not r.passed


def test_marker_truth_path_and_bad_inputs() -> None:
    g = mg(
        truth_path=["uns", "rgg", "names", "B"],
        truth_top_n=2,
        answer_field="genes",
        thresholds={"recall_at_k": 1.0},
    )
    truth = {"uns": {"rgg": {"names": {"B": ["CD79A", "MS4A1", "CD74"]}}}}
    assert grade(g, {"genes": ["MS4A1", "CD79A"]}, truth).passed
    assert not grade(g, {"genes": ["CD74"]}, truth).passed
    assert not grade(g, {"genes": [1, 2]}, truth).passed
    assert not grade(g, None, truth).passed
    with pytest.raises(GradingError, match="unknown threshold"):
        grade(mg(canonical_markers=["A"], thresholds={"f1": 0.5}), {})


def dist(**config: object) -> dict:
    return {"type": "distribution_comparison", "config": config}


def test_distribution_scbench_config() -> None:
    g = dist(
        ground_truth={"total_cells": 10, "cell_type_distribution": {"T": 60.0, "B": 40.0}},
        tolerances={"cell_type_percentages": {"type": "absolute", "value": 5.0}},
    )
    r = grade(g, {"cell_type_distribution": {"t": 64.0, "B": 36.0}})
    assert r.passed and r.field_scores == {"T": 1.0, "B": 1.0}
    r = grade(g, {"cell_type_distribution": {"T": 66.0, "B": 34.0}})
    assert not r.passed and r.score == 0.0
    r = grade(g, {"cell_type_distribution": {"T": 60.0}})
    assert r.field_scores == {"T": 1.0, "B": 0.0}
    assert not grade(g, {"cell_type_distribution": {"T": "60", "B": 40}}).passed
    assert not grade(g, None).passed


def test_distribution_from_withheld_obs_in_fractions() -> None:
    g = dist(
        truth_obs="ct",
        truth_map={"CD4": "T", "CD8": "T"},
        units="fraction",
        tolerances={"p": {"type": "absolute", "value": 0.02}},
    )
    truth = {"obs": {"ct": {"a": "CD4", "b": "CD8", "c": "B", "d": "CD4"}}}
    assert grade(g, {"cell_type_distribution": {"T": 0.75, "B": 0.25}}, truth).passed
    assert not grade(g, {"cell_type_distribution": {"T": 0.5, "B": 0.5}}, truth).passed
