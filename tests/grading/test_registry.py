"""The grade() entry point and the registry."""

from __future__ import annotations

from typing import Any

import pytest

from cellprompt.errors import GradingError
from cellprompt.grading import GradeContext, Grader, GraderConfig, GradeResult, grade, grader_types
from cellprompt.grading.registry import graders, register


def test_all_issue_graders_are_registered() -> None:
    assert {
        "numeric_tolerance",
        "multiple_choice",
        "marker_gene_precision_recall",
        "label_set_jaccard",
        "distribution_comparison",
        "label_agreement",
        "python_check",
    } <= set(grader_types())


@pytest.mark.parametrize("spec", [{"type": "vibes"}, {"config": {}}, "numeric_tolerance"])
def test_unknown_or_malformed_grader(spec: Any) -> None:
    with pytest.raises(GradingError) as info:
        grade(spec, {})
    assert "\n" not in info.value.message


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(GradingError, match="config must be a mapping"):
        grade({"type": "multiple_choice", "config": ["B"]}, {})


def test_new_grader_is_one_class() -> None:
    class Cfg(GraderConfig):
        word: str

    @register
    class Echo(Grader[Cfg]):
        type = "test_echo"
        Config = Cfg

        def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
            ok = (answer or {}).get("w") == self.config.word
            return GradeResult(score=float(ok), passed=ok)

    try:
        assert grade({"type": "test_echo", "config": {"word": "hi"}}, {"w": "hi"}).passed
        assert grade({"type": "test_echo", "config": {"word": "hi"}}, {"w": "hi"}).grader == "test_echo"
        with pytest.raises(GradingError, match=r"test_echo grader: config\.word"):
            grade({"type": "test_echo", "config": {}}, {})
    finally:
        graders.remove("test_echo")
