"""`multiple_choice`: an exact, case-insensitive match of the chosen option."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register


class ChoiceConfig(GraderConfig):
    correct_answer: str | None = None
    correct_answers: list[str] | None = None  # any of these is right
    answer_field: str = "answer"

    @model_validator(mode="after")
    def _has_answer(self) -> ChoiceConfig:
        if not self.correct_answer and not self.correct_answers:
            raise ValueError("give 'correct_answer' (e.g. \"B\") or 'correct_answers'")
        return self


def _norm(value: Any) -> str:
    return str(value).strip().upper()


@register
class MultipleChoice(Grader[ChoiceConfig]):
    type = "multiple_choice"
    Config = ChoiceConfig

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        accepted = {_norm(a) for a in
                    (self.config.correct_answers or []) + [self.config.correct_answer or ""] if a}
        field = self.config.answer_field
        got = (answer or {}).get(field)
        ok = isinstance(got, str | int) and not isinstance(got, bool) and _norm(got) in accepted
        reason = (f"{field}: missing" if got is None else
                  f"{field}: {got!r} {'is' if ok else 'is not'} {' or '.join(sorted(accepted))}")
        return GradeResult(score=1.0 if ok else 0.0, passed=ok, field_scores={field: float(ok)},
                           metrics={"answer": got, "correct": sorted(accepted)}, reasoning=reason)
