"""`numeric_tolerance`, with scBench's semantics.

Per field: absolute (|a − t| <= v), relative (|a − t| <= v·|t|), or asymmetric
bounds (t − lower <= a <= t + upper, scaled by |t| when relative). A relative
tolerance at truth 0 therefore only accepts exactly 0. Missing, null,
non-numeric (strings, booleans) and NaN answers fail their field.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellprompt.errors import GradingError
from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register
from cellprompt.grading.truth import lookup


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["absolute", "relative"] = "absolute"
    value: float | None = None
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Tolerance:
        asym = self.lower is not None or self.upper is not None
        if self.value is None and not asym:
            raise ValueError("give either 'value' or 'lower'/'upper'")
        for name in ("value", "lower", "upper"):
            v = getattr(self, name)
            if v is not None and (v < 0 or math.isnan(v)):
                raise ValueError(f"'{name}' must be a non-negative number")
        return self

    def bounds(self, truth: float) -> tuple[float, float]:
        scale = abs(truth) if self.type == "relative" else 1.0
        if self.lower is not None or self.upper is not None:
            lo = self.lower if self.lower is not None else (self.value or 0.0)
            hi = self.upper if self.upper is not None else (self.value or 0.0)
        else:
            lo = hi = self.value or 0.0
        return truth - lo * scale, truth + hi * scale

    def describe(self) -> str:
        unit = "×|truth|" if self.type == "relative" else ""
        if self.lower is not None or self.upper is not None:
            return f"-{self.lower or self.value or 0}{unit}/+{self.upper or self.value or 0}{unit}"
        return f"±{self.value}{unit}"


class NumericConfig(GraderConfig):
    ground_truth: dict[str, float] | None = None
    truth_path: list[str] | None = None  # into withheld truth, yielding {field: number}
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)
    tolerance: float | Tolerance | None = None

    @model_validator(mode="after")
    def _has_truth(self) -> NumericConfig:
        if self.ground_truth is None and self.truth_path is None:
            raise ValueError("give 'ground_truth' (field -> number) or 'truth_path'")
        return self


def as_number(value: Any) -> float | None:
    """A finite-or-infinite float for real numbers; None for anything an agent must not pass."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return None if math.isnan(number) else number


@register
class NumericTolerance(Grader[NumericConfig]):
    type = "numeric_tolerance"
    Config = NumericConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        p = self.config.truth_path
        return {p[0]: [p[1]]} if p and len(p) > 1 else {}

    def _truth(self, ctx: GradeContext) -> dict[str, float]:
        if self.config.ground_truth is not None:
            return self.config.ground_truth
        value = lookup(ctx.truth, self.config.truth_path or [], self.type)
        if not isinstance(value, dict) or any(as_number(v) is None for v in value.values()):
            raise GradingError(f"{self.type} grader: truth at {'/'.join(self.config.truth_path or [])}"
                               " must map field -> number")
        return {k: float(v) for k, v in value.items()}

    def _tolerance(self, name: str) -> Tolerance:
        if name in self.config.tolerances:
            return self.config.tolerances[name]
        tol = self.config.tolerance
        if isinstance(tol, Tolerance):
            return tol
        return Tolerance(type="absolute", value=float(tol) if tol is not None else 0.0)

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        truth = self._truth(ctx)
        if not truth:
            raise GradingError(f"{self.type} grader: ground_truth is empty; name at least one field")
        answer = answer or {}
        scores: dict[str, float] = {}
        metrics: dict[str, Any] = {}
        lines: list[str] = []
        for name, expected in truth.items():
            tol = self._tolerance(name)
            raw = answer.get(name)
            got = as_number(raw)
            metrics[f"{name}_expected"] = expected
            metrics[f"{name}_actual"] = raw
            if name not in answer:
                ok, why = False, "missing"
            elif got is None:
                ok, why = False, f"not a number: {raw!r}"
            else:
                lo, hi = tol.bounds(expected)
                ok = lo <= got <= hi
                metrics[f"{name}_error"] = abs(got - expected)
                why = f"{got:g} vs {expected:g} ({tol.describe()})"
            scores[name] = 1.0 if ok else 0.0
            lines.append(f"{'✓' if ok else '✗'} {name}: {why}")
        score = sum(scores.values()) / len(scores)
        return GradeResult(score=score, passed=all(v == 1.0 for v in scores.values()),
                           field_scores=scores, metrics=metrics, reasoning="\n".join(lines))
