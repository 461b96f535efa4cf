"""What every grader returns, as kept in a trial record."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GradeResult(BaseModel):
    """scBench's grader result shape, plus the grader's type for bookkeeping."""

    grader: str = ""
    score: float = Field(ge=0.0, le=1.0)
    passed: bool
    field_scores: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    reasoning: str = ""
