"""Set-valued answers: `label_set_jaccard` and `marker_gene_precision_recall`.

Both compare names case-insensitively (gene symbols and labels arrive in
whatever case the agent's library printed) and accept scBench's config keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellprompt.errors import GradingError
from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register
from cellprompt.grading.truth import lookup, obs_labels


def _key(name: Any) -> str:
    return str(name).strip().casefold()


def _string_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for n in names:
        seen.setdefault(_key(n), n)
    return list(seen.values())


class _Scoring(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pass_threshold: float | None = None
    pass_thresholds: dict[str, float] = Field(default_factory=dict)


class JaccardConfig(GraderConfig):
    ground_truth_labels: list[str] | None = None
    ground_truth: list[str] | None = None
    truth_obs: str | None = None  # the set of labels of a withheld obs column
    truth_path: list[str] | None = None  # or a list inside the withheld truth
    answer_field: str | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    scoring: _Scoring = Field(default_factory=_Scoring)

    @model_validator(mode="after")
    def _has_truth(self) -> JaccardConfig:
        if (self.ground_truth_labels is None and self.ground_truth is None and not self.truth_obs
                and not self.truth_path):
            raise ValueError("give 'ground_truth_labels' (a list), 'truth_obs' or 'truth_path'")
        return self


@register
class LabelSetJaccard(Grader[JaccardConfig]):
    type = "label_set_jaccard"
    Config = JaccardConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        if self.config.truth_obs:
            return {"obs": [self.config.truth_obs]}
        p = self.config.truth_path
        return {p[0]: [p[1]]} if p and len(p) > 1 else {}

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        c = self.config
        if c.truth_obs:
            truth_list = [str(v) for v in obs_labels(ctx.truth, c.truth_obs, self.type).values()
                          if v is not None]
        elif c.truth_path:
            value = lookup(ctx.truth, c.truth_path, self.type)
            if not isinstance(value, list):
                raise GradingError(f"{self.type} grader: truth at {'/'.join(c.truth_path)} is not "
                                   "a list")
            truth_list = [str(v) for v in value]
        else:
            truth_list = list(c.ground_truth_labels or c.ground_truth or [])
        threshold = c.threshold if c.threshold is not None else (c.scoring.pass_threshold or 0.9)
        answer = answer or {}
        field = c.answer_field or next(
            (f for f in ("cell_types_predicted", "labels") if f in answer), "labels")
        got = _string_list(answer.get(field))
        if got is None:
            why = "missing" if field not in answer else "not a list of strings"
            return GradeResult(score=0.0, passed=False, field_scores={field: 0.0},
                               metrics={"pass_threshold": threshold}, reasoning=f"{field}: {why}")
        truth_set = {_key(t) for t in truth_list}
        pred_set = {_key(p) for p in got}
        union = truth_set | pred_set
        jaccard = len(truth_set & pred_set) / len(union) if union else 1.0
        ok = jaccard >= threshold
        metrics = {"jaccard_index": jaccard, "pass_threshold": threshold,
                   "false_positives": sorted(pred_set - truth_set),
                   "false_negatives": sorted(truth_set - pred_set)}
        reason = (f"Jaccard {jaccard:.3f} {'>=' if ok else '<'} {threshold}; "
                  f"extra {metrics['false_positives']}, missing {metrics['false_negatives']}")
        return GradeResult(score=jaccard, passed=ok, field_scores={field: jaccard},
                           metrics=metrics, reasoning=reason)


class MarkerConfig(GraderConfig):
    canonical_markers: list[str] | None = None
    truth_path: list[str] | None = None  # a gene list inside withheld truth
    truth_top_n: int | None = Field(default=None, ge=1)  # keep the first n of that list
    # genes a valid answer may contain at all (e.g. every significantly up-regulated gene):
    # a listed gene outside it (a down-regulated one ranked by |score|) fails the answer
    truth_allowed_path: list[str] | None = None
    max_not_allowed: int = Field(default=0, ge=0)
    answer_field: str = "top_marker_genes"
    k: int | None = Field(default=None, ge=1)  # default: the length of the reference list
    score: Literal["recall_at_k", "precision_at_k"] = "recall_at_k"
    thresholds: dict[str, float] = Field(default_factory=dict)  # recall_at_k, precision_at_k
    scoring: _Scoring = Field(default_factory=_Scoring)

    @model_validator(mode="after")
    def _check(self) -> MarkerConfig:
        if self.canonical_markers is None and self.truth_path is None:
            raise ValueError("give 'canonical_markers' (a gene list) or 'truth_path'")
        unknown = set(self.all_thresholds()) - {"recall_at_k", "precision_at_k"}
        if unknown:
            raise ValueError(f"unknown threshold(s) {sorted(unknown)}: use recall_at_k, "
                             "precision_at_k")
        return self

    def all_thresholds(self) -> dict[str, float]:
        return {**self.scoring.pass_thresholds, **self.thresholds}


@register
class MarkerGenePrecisionRecall(Grader[MarkerConfig]):
    """P@K and R@K of the agent's ranked gene list against a reference list."""

    type = "marker_gene_precision_recall"
    Config = MarkerConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        needs: dict[str, list[str]] = {}
        for p in (self.config.truth_path, self.config.truth_allowed_path):
            if p and len(p) > 1:
                needs.setdefault(p[0], []).append(p[1])
        return needs

    def _allowed(self, ctx: GradeContext) -> set[str] | None:
        path = self.config.truth_allowed_path
        if not path:
            return None
        value = lookup(ctx.truth, path, self.type)
        if not isinstance(value, list):
            raise GradingError(f"{self.type} grader: truth at {'/'.join(path)} is not a gene list")
        return {_key(v) for v in value}

    def _reference(self, ctx: GradeContext) -> list[str]:
        if self.config.canonical_markers is not None:
            ref = self.config.canonical_markers
        else:
            ref = _string_list(lookup(ctx.truth, self.config.truth_path or [], self.type)) or []
            if not ref:
                raise GradingError(f"{self.type} grader: truth at "
                                   f"{'/'.join(self.config.truth_path or [])} is not a gene list")
        if self.config.truth_top_n:
            ref = ref[: self.config.truth_top_n]
        return _unique(ref)

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        ref = self._reference(ctx)
        field = self.config.answer_field
        thresholds = self.config.all_thresholds() or {"recall_at_k": 0.5}
        got = _string_list((answer or {}).get(field))
        if got is None:
            why = "missing" if field not in (answer or {}) else "not a list of gene symbols"
            return GradeResult(score=0.0, passed=False, field_scores={field: 0.0},
                               metrics={"thresholds": thresholds}, reasoning=f"{field}: {why}")
        genes = _unique(got)
        # k is the reference list's length unless set: listing every gene must not pass
        k = self.config.k or max(len(ref), 1)
        top = {_key(g) for g in genes[:k]}
        hits = top & {_key(r) for r in ref}
        metrics: dict[str, Any] = {
            "k": k, "precision_at_k": len(hits) / k,
            "recall_at_k": len(hits) / max(len(ref), 1),
            "true_positives": sorted(hits), "n_reference": len(ref), "thresholds": thresholds}
        ok = all(metrics[name] >= value for name, value in thresholds.items())
        allowed = self._allowed(ctx)
        extra = ""
        if allowed is not None:
            outside = [g for g in genes[:k] if _key(g) not in allowed]
            metrics["not_allowed"] = outside
            if len(outside) > self.config.max_not_allowed:
                ok = False
                extra = (f"; {len(outside)} listed gene(s) are outside the allowed set, e.g. "
                         f"not up-regulated ({', '.join(outside[:5])})")
        reason = (f"P@{k} {metrics['precision_at_k']:.2f}, R@{k} {metrics['recall_at_k']:.2f} "
                  f"({len(hits)}/{len(ref)} reference genes){extra}; thresholds {thresholds}: "
                  f"{'pass' if ok else 'fail'}")
        score = metrics[self.config.score]
        return GradeResult(score=score, passed=ok, field_scores={field: score}, metrics=metrics,
                           reasoning=reason)
