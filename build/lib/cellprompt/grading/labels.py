"""`label_agreement`: per-cell labels the agent wrote against withheld labels.

Labels come from a CSV in the agent's workspace (cell id, label) or from an
answer field (a cell -> label mapping). Cluster ids are arbitrary, so accuracy
is taken after the best one-to-one matching of predicted to true labels
(Hungarian, `linear_sum_assignment`); `matching: exact` compares names instead
(cell typing with a fixed vocabulary), `majority` maps each predicted label to
its most common true label. ARI and NMI never depend on names.

Small populations count: `min_recall` (the worst per-class recall after matching),
`balanced_accuracy` (mean per-class recall) and `macro_f1` fail an answer that never
calls a rare type, which plain accuracy passes (NK and progenitors are 6% of PBMCs).
A CSV that cannot be read as one row per cell (tab-separated, swapped columns,
duplicate ids) is a failed grade that names the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from cellprompt.errors import GradingError
from cellprompt.grading.answer_files import UnsafePath, parse_cell_table, read_workspace_file
from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register
from cellprompt.grading.truth import obs_labels

MISSING = "\0missing"


class AgreementConfig(GraderConfig):
    truth_obs: str | None = None
    ground_truth_labels: dict[str, str] | None = None  # cell id -> label, inline
    truth_map: dict[str, str] = Field(default_factory=dict)  # fine -> coarse true label
    path: str | None = None  # CSV under the workspace: cell id, label
    label_column: str | None = None  # with a header: which column holds the label
    answer_field: str | None = None  # or an answer field: {cell_id: label}
    matching: Literal["hungarian", "exact", "majority"] = "hungarian"
    thresholds: dict[str, float] = Field(min_length=1)  # see METRICS
    score: str = "accuracy"  # the metric reported as the grade's score

    @model_validator(mode="after")
    def _check(self) -> AgreementConfig:
        if not self.truth_obs and self.ground_truth_labels is None:
            raise ValueError("give 'truth_obs' (a withheld obs column) or 'ground_truth_labels'")
        if not self.path and not self.answer_field:
            raise ValueError("give 'path' (a CSV in the workspace) or 'answer_field'")
        unknown = set(self.thresholds) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown threshold(s) {sorted(unknown)}: use {', '.join(METRICS)}")
        if self.score not in METRICS:
            raise ValueError(f"unknown score {self.score!r}: use one of {', '.join(METRICS)}")
        return self


METRICS = ("accuracy", "ari", "nmi", "balanced_accuracy", "min_recall", "macro_f1")


def per_class(truth: list[str], pred: list[str], mode: str, mapping: dict[str, str]
              ) -> dict[str, dict[str, float]]:
    """Recall and F1 of every true class, predicted labels mapped onto true ones first."""
    if mode == "exact":
        mapped = [p.casefold() for p in pred]
        keys = [t.casefold() for t in truth]
    else:
        mapped = [mapping.get(p, MISSING) for p in pred]
        keys = truth
    out: dict[str, dict[str, float]] = {}
    for cls, key in sorted(dict(zip(truth, keys, strict=True)).items()):
        n_true = sum(k == key for k in keys)
        n_pred = sum(m == key for m in mapped)
        hit = sum(k == key and m == key for k, m in zip(keys, mapped, strict=True))
        recall = hit / n_true if n_true else 0.0
        precision = hit / n_pred if n_pred else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[cls] = {"recall": recall, "f1": f1, "n": n_true}
    return out


def best_match_accuracy(truth: list[str], pred: list[str], mode: str) -> tuple[float, dict]:
    """Fraction of cells right after mapping predicted labels onto true ones."""
    if mode == "exact":
        hits = sum(t.casefold() == p.casefold() for t, p in zip(truth, pred, strict=True))
        return hits / len(truth), {}
    t_names, t_idx = np.unique(truth, return_inverse=True)
    p_names, p_idx = np.unique(pred, return_inverse=True)
    table = np.zeros((len(p_names), len(t_names)), dtype=np.int64)
    np.add.at(table, (p_idx, t_idx), 1)
    missing = [i for i, n in enumerate(p_names) if n == MISSING]
    table[missing, :] = 0  # cells the agent did not label are never right
    if mode == "majority":
        rows, cols = np.arange(len(p_names)), table.argmax(axis=1)
    else:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = {str(p_names[r]): str(t_names[c]) for r, c in zip(rows, cols, strict=True)
               if p_names[r] != MISSING}
    return float(table[rows, cols].sum()) / len(truth), mapping


@register
class LabelAgreement(Grader[AgreementConfig]):
    type = "label_agreement"
    Config = AgreementConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        return {"obs": [self.config.truth_obs]} if self.config.truth_obs else {}

    def _truth(self, ctx: GradeContext) -> dict[str, str]:
        c = self.config
        raw = (c.ground_truth_labels if c.ground_truth_labels is not None
               else obs_labels(ctx.truth, c.truth_obs or "", self.type))
        return {str(k): c.truth_map.get(str(v), str(v)) for k, v in raw.items() if v is not None}

    def _predicted(self, answer: dict[str, Any] | None, ctx: GradeContext,
                   known: set[str]) -> tuple[dict[str, str] | None, str, list[str]]:
        c = self.config
        if c.path:
            if ctx.workspace is None:
                return None, f"{c.path}: not written (no workspace was kept)", []
            try:
                data = read_workspace_file(Path(ctx.workspace), c.path)
            except UnsafePath as exc:
                return None, str(exc), []
            table = parse_cell_table(data, known, "label", c.label_column, name=c.path)
            if table.problem:
                return None, table.problem, []
            return table.values, c.path, table.notes
        value = (answer or {}).get(c.answer_field or "")
        if not isinstance(value, dict):
            return None, f"{c.answer_field}: missing or not a cell -> label mapping", []
        return {str(k): str(v) for k, v in value.items()}, c.answer_field or "", []

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        truth = self._truth(ctx)
        if not truth:
            raise GradingError(f"{self.type} grader: the true labels are empty")
        pred, source, notes = self._predicted(answer, ctx, set(truth))
        thresholds = self.config.thresholds
        if not pred:
            why = source if pred is None else f"{source}: no labelled cells"
            return GradeResult(score=0.0, passed=False, metrics={"thresholds": thresholds},
                               reasoning=why)
        cells = list(truth)
        t = [truth[c] for c in cells]
        p = [pred.get(c, MISSING) for c in cells]
        accuracy, mapping = best_match_accuracy(t, p, self.config.matching)
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # slow import

        classes = per_class(t, p, self.config.matching, mapping)
        recalls = [v["recall"] for v in classes.values()]
        coverage = sum(x != MISSING for x in p) / len(cells)
        metrics: dict[str, Any] = {
            "accuracy": accuracy, "ari": float(adjusted_rand_score(t, p)),
            "nmi": float(normalized_mutual_info_score(t, p)),
            "balanced_accuracy": float(np.mean(recalls)), "min_recall": float(min(recalls)),
            "macro_f1": float(np.mean([v["f1"] for v in classes.values()])),
            "per_class_recall": {k: round(v["recall"], 4) for k, v in classes.items()},
            "coverage": coverage,
            "n_true_labels": len(set(t)), "n_predicted_labels": len(set(p) - {MISSING}),
            "thresholds": thresholds}
        if mapping:
            metrics["mapping"] = mapping
        scores = {name: 1.0 if metrics[name] >= v else 0.0 for name, v in thresholds.items()}
        ok = all(s == 1.0 for s in scores.values())
        worst = min(classes, key=lambda k: classes[k]["recall"])
        if coverage < 1:
            notes = [f"{round((1 - coverage) * len(cells))} cell(s) have no label", *notes]
        reason = (f"{source}: accuracy ({self.config.matching}) {accuracy:.3f}, ARI "
                  f"{metrics['ari']:.3f}, NMI {metrics['nmi']:.3f}, lowest recall "
                  f"{metrics['min_recall']:.2f} ({worst}), coverage {coverage:.2f}"
                  f"{'; ' + '; '.join(notes) if notes else ''}; thresholds {thresholds}: "
                  f"{'pass' if ok else 'fail'}")
        score = min(1.0, max(0.0, float(metrics[self.config.score])))
        return GradeResult(score=score, passed=ok, field_scores=scores, metrics=metrics,
                           reasoning=reason)
