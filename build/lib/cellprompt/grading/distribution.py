"""`distribution_comparison`: per-label proportions, each within a tolerance."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellprompt.grading.base import GradeResult
from cellprompt.grading.numeric import Tolerance, as_number
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register
from cellprompt.grading.truth import obs_labels


class _Truth(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cell_type_distribution: dict[str, float]
    total_cells: float | None = None


class DistributionConfig(GraderConfig):
    ground_truth: _Truth | None = None
    truth_obs: str | None = None  # proportions computed from a withheld obs column
    truth_map: dict[str, str] = Field(default_factory=dict)  # fine -> coarse label
    answer_field: str = "cell_type_distribution"
    units: Literal["percent", "fraction"] = "percent"
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)  # key: cell_type_percentages

    @model_validator(mode="after")
    def _has_truth(self) -> DistributionConfig:
        if self.ground_truth is None and not self.truth_obs:
            raise ValueError("give 'ground_truth.cell_type_distribution' or 'truth_obs'")
        return self


@register
class DistributionComparison(Grader[DistributionConfig]):
    type = "distribution_comparison"
    Config = DistributionConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        return {"obs": [self.config.truth_obs]} if self.config.truth_obs else {}

    def _expected(self, ctx: GradeContext) -> dict[str, float]:
        c = self.config
        if c.ground_truth is not None:
            return dict(c.ground_truth.cell_type_distribution)
        labels = [c.truth_map.get(str(v), str(v))
                  for v in obs_labels(ctx.truth, c.truth_obs or "", self.type).values()
                  if v is not None]
        scale = 100.0 if c.units == "percent" else 1.0
        return {k: n * scale / len(labels) for k, n in sorted(Counter(labels).items())}

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        expected = self._expected(ctx)
        default = 5.0 if self.config.units == "percent" else 0.05
        tol = (self.config.tolerances.get("cell_type_percentages")
               or next(iter(self.config.tolerances.values()), None)
               or Tolerance(type="absolute", value=default))
        field = self.config.answer_field
        got = (answer or {}).get(field)
        if not isinstance(got, dict):
            why = "missing" if got is None else "not a label -> proportion mapping"
            return GradeResult(score=0.0, passed=False, field_scores={k: 0.0 for k in expected},
                               metrics={"expected": expected}, reasoning=f"{field}: {why}")
        by_key = {str(k).strip().casefold(): v for k, v in got.items()}
        scores: dict[str, float] = {}
        lines: list[str] = []
        for label, exp in expected.items():
            value = as_number(by_key.get(label.strip().casefold()))
            lo, hi = tol.bounds(exp)
            ok = value is not None and lo <= value <= hi
            scores[label] = 1.0 if ok else 0.0
            shown = "missing/not a number" if value is None else f"{value:g}"
            lines.append(f"{'✓' if ok else '✗'} {label}: {shown} vs {exp:.2f} ({tol.describe()})")
        score = sum(scores.values()) / len(scores) if scores else 0.0
        return GradeResult(score=score, passed=bool(scores) and score == 1.0, field_scores=scores,
                           metrics={"expected": expected, "actual": got},
                           reasoning="\n".join(lines))
