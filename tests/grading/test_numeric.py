"""numeric_tolerance with scBench's semantics, edge cases included."""

from __future__ import annotations

import math

import pytest

from cellprompt.errors import GradingError
from cellprompt.grading import grade


def nt(config: dict) -> dict:
    return {"type": "numeric_tolerance", "config": config}


ABS = nt({"ground_truth": {"n": 100}, "tolerances": {"n": {"type": "absolute", "value": 5}}})


@pytest.mark.parametrize(
    ("value", "passed"), [(100, True), (105, True), (95, True), (105.01, False), (94.9, False), (100.0, True)]
)
def test_absolute(value: float, passed: bool) -> None:
    r = grade(ABS, {"n": value})
    assert r.passed is passed
    assert r.field_scores == {"n": 1.0 if passed else 0.0}
    assert r.grader == "numeric_tolerance"


def test_relative() -> None:
    g = nt({"ground_truth": {"x": -200}, "tolerances": {"x": {"type": "relative", "value": 0.1}}})
    assert grade(g, {"x": -180}).passed  # |truth| scales, sign does not matter
    assert grade(g, {"x": -220}).passed
    assert not grade(g, {"x": -179}).passed


def test_relative_at_truth_zero_accepts_only_zero() -> None:
    g = nt({"ground_truth": {"x": 0}, "tolerances": {"x": {"type": "relative", "value": 0.5}}})
    assert grade(g, {"x": 0}).passed
    assert grade(g, {"x": 0.0}).passed
    assert not grade(g, {"x": 1e-9}).passed


def test_asymmetric_bounds() -> None:
    g = nt({"ground_truth": {"x": 10}, "tolerances": {"x": {"type": "absolute", "lower": 1, "upper": 3}}})
    assert grade(g, {"x": 9}).passed
    assert grade(g, {"x": 13}).passed
    assert not grade(g, {"x": 8.99}).passed
    assert not grade(g, {"x": 13.01}).passed
    rel = nt(
        {"ground_truth": {"x": 10}, "tolerances": {"x": {"type": "relative", "lower": 0.1, "upper": 0.5}}}
    )
    assert grade(rel, {"x": 9}).passed and grade(rel, {"x": 15}).passed
    assert not grade(rel, {"x": 8.9}).passed and not grade(rel, {"x": 15.1}).passed


def test_top_level_scalar_tolerance_applies_to_every_field_unless_overridden() -> None:
    g = nt(
        {
            "ground_truth": {"a": 1.0, "b": 2.0},
            "tolerance": 0.5,
            "tolerances": {"b": {"type": "absolute", "value": 0.01}},
        }
    )
    r = grade(g, {"a": 1.4, "b": 2.4})
    assert r.field_scores == {"a": 1.0, "b": 0.0}
    assert r.score == 0.5 and not r.passed


def test_default_is_exact() -> None:
    g = nt({"ground_truth": {"a": 3}})
    assert grade(g, {"a": 3}).passed
    assert not grade(g, {"a": 3.0001}).passed


@pytest.mark.parametrize("bad", ["100", None, True, [100], {"v": 100}, math.nan])
def test_non_numeric_null_nan_fail_the_field(bad: object) -> None:
    r = grade(nt({"ground_truth": {"n": 100, "m": 1}, "tolerance": 1000}), {"n": bad, "m": 1})
    assert r.field_scores == {"n": 0.0, "m": 1.0}
    assert r.score == 0.5 and not r.passed


def test_missing_field_and_null_answer() -> None:
    r = grade(ABS, {"other": 100})
    assert not r.passed and "missing" in r.reasoning
    r = grade(ABS, None)
    assert not r.passed and r.score == 0.0


def test_infinite_answer_fails() -> None:
    assert not grade(ABS, {"n": math.inf}).passed


def test_truth_path_reads_withheld_truth() -> None:
    g = nt({"truth_path": ["uns", "qc"], "tolerance": 0.1})
    truth = {"uns": {"qc": {"n": 5}}}
    assert grade(g, {"n": 5.05}, truth).passed
    with pytest.raises(GradingError, match="no uns/qc"):
        grade(g, {"n": 5}, {"uns": {}})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "ground_truth"),
        ({"ground_truth": {"x": "ten"}}, "config.ground_truth.x"),
        (
            {"ground_truth": {"x": 1}, "tolerances": {"x": {"type": "fuzzy", "value": 1}}},
            "config.tolerances.x.type",
        ),
        ({"ground_truth": {"x": 1}, "tolerances": {"x": {"type": "absolute"}}}, "lower"),
        ({"ground_truth": {"x": 1}, "tolerances": {"x": {"value": -1}}}, "non-negative"),
    ],
)
def test_bad_config_is_one_clear_line(config: dict, message: str) -> None:
    with pytest.raises(GradingError, match=message) as info:
        grade(nt(config), {"x": 1})
    assert "\n" not in str(info.value) and str(info.value).startswith("numeric_tolerance grader")
