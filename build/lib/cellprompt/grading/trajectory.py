"""`pseudotime_correlation`: a per-cell pseudotime against the simulated time, branch by branch.

One Spearman correlation over all cells rewards the wrong things: valid diffusion
pseudotimes differ in how they scale one branch against another (so a global ρ fails
valid DPT with many neighbours), while a crude distance to the root can rank well
globally. Time is ordered *along* each lineage, so the grade is the worst per-branch
Spearman ρ (`min_branch_spearman`); cells before the split (branch `trunk`) belong to
every branch. A malformed CSV is a failed grade that names the problem.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from cellprompt.grading.answer_files import UnsafePath, parse_cell_table, read_workspace_file
from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register
from cellprompt.grading.truth import obs_labels

METRICS = ("spearman", "min_branch_spearman")


class PseudotimeConfig(GraderConfig):
    truth_time: str  # withheld obs column: the simulated time of every cell
    truth_branch: str | None = None  # withheld obs column: the lineage of every cell
    shared_branch: str = "trunk"  # cells before the split: counted in every branch
    path: str  # CSV under the workspace: cell_id,pseudotime
    value_column: str | None = None
    thresholds: dict[str, float] = Field(min_length=1)
    min_coverage: float = Field(default=0.95, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> PseudotimeConfig:
        unknown = set(self.thresholds) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown threshold(s) {sorted(unknown)}: use {', '.join(METRICS)}")
        return self


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@register
class PseudotimeCorrelation(Grader[PseudotimeConfig]):
    type = "pseudotime_correlation"
    Config = PseudotimeConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        c = self.config
        return {"obs": [c.truth_time, *([c.truth_branch] if c.truth_branch else [])]}

    def _fail(self, why: str) -> GradeResult:
        return GradeResult(score=0.0, passed=False, metrics={"thresholds": self.config.thresholds},
                           reasoning=why)

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        from scipy.stats import spearmanr

        c = self.config
        time = {k: float(v) for k, v in obs_labels(ctx.truth, c.truth_time, self.type).items()
                if v is not None}
        branch = (obs_labels(ctx.truth, c.truth_branch, self.type) if c.truth_branch else {})
        if ctx.workspace is None:
            return self._fail(f"{c.path}: not written (no workspace was kept)")
        try:
            data = read_workspace_file(Path(ctx.workspace), c.path)
        except UnsafePath as exc:
            return self._fail(str(exc))
        table = parse_cell_table(data, set(time), "pseudotime", c.value_column, name=c.path)
        if table.problem:
            return self._fail(table.problem)
        values = {k: _number(v) for k, v in table.values.items()}
        bad = [k for k, v in values.items() if v is None]
        if bad:
            return self._fail(f"{c.path}: {len(bad)} pseudotime value(s) are not finite numbers "
                              f"(e.g. {table.values[bad[0]]!r})")
        coverage = len(values) / len(time)
        if coverage < c.min_coverage:
            return self._fail(f"{c.path}: only {len(values)} of {len(time)} cells have a "
                              f"pseudotime (at least {c.min_coverage:.0%} needed)")
        cells = [k for k in time if k in values]

        def rho(subset: list[str]) -> float:
            if len({values[k] for k in subset}) < 2:
                return 0.0  # a constant ranks nothing
            r = float(spearmanr([values[k] for k in subset], [time[k] for k in subset])[0])
            return r if math.isfinite(r) else 0.0

        metrics: dict[str, Any] = {"spearman": rho(cells), "coverage": coverage,
                                   "thresholds": c.thresholds}
        per: dict[str, float] = {}
        lineages = sorted({str(b) for b in branch.values()} - {c.shared_branch})
        for lin in lineages:
            subset = [k for k in cells if str(branch.get(k)) in (lin, c.shared_branch)]
            per[lin] = rho(subset)
        metrics["branch_spearman"] = per
        metrics["min_branch_spearman"] = min(per.values()) if per else metrics["spearman"]
        scores = {n: 1.0 if metrics[n] >= v else 0.0 for n, v in c.thresholds.items()}
        ok = all(s == 1.0 for s in scores.values())
        shown = ", ".join(f"{k} {v:.3f}" for k, v in per.items())
        notes = f"; {'; '.join(table.notes)}" if table.notes else ""
        reason = (f"{c.path}: Spearman with simulated time {metrics['spearman']:.3f}; per branch "
                  f"{shown or '-'}{notes}; thresholds {c.thresholds}: {'pass' if ok else 'fail'}")
        score = max(0.0, min(1.0, metrics["min_branch_spearman"]))
        return GradeResult(score=score, passed=ok, field_scores=scores, metrics=metrics,
                           reasoning=reason)
