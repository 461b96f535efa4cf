"""Is a candidate better than the incumbent by more than the noise?

Scores of one prompt on one task vary between replicates; comparing two
prompts task by task (paired) removes the task-difficulty variance, and the
remaining replicate noise is estimated from every repeated measurement seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean

PRIOR_VARIANCE = 0.02  # a trial score's variance before any replicate has been seen
PRIOR_WEIGHT = 2.0  # in degrees of freedom


@dataclass(frozen=True)
class Comparison:
    delta: float  # mean over shared tasks of (candidate mean - incumbent mean)
    se: float  # its standard error from the replicate noise
    tasks: int

    def wins(self, z: float, min_delta: float = 1e-9) -> bool:
        return self.tasks > 0 and self.delta > max(min_delta, z * self.se)

    def loses(self, z: float) -> bool:
        """Worse by more than the noise: only then is a cheap gate allowed to reject."""
        return self.tasks > 0 and -self.delta > max(1e-9, z * self.se)

    def evidence(self, z: float) -> dict[str, float]:
        """What a verdict rested on, kept with it in evolution.jsonl."""
        return {"delta": round(self.delta, 4), "se": round(self.se, 4), "z": z, "tasks": self.tasks}


class NoiseModel:
    """Pooled within-(prompt, task) variance of trial scores, shrunk towards a prior."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], list[float]] = {}

    def add(self, prompt_id: str, task: str, scores: list[float]) -> None:
        self._groups.setdefault((prompt_id, task), []).extend(scores)

    def variance(self) -> float:
        ss, df = 0.0, 0
        for values in self._groups.values():
            if len(values) > 1:
                m = fmean(values)
                ss += sum((v - m) ** 2 for v in values)
                df += len(values) - 1
        return (ss + PRIOR_VARIANCE * PRIOR_WEIGHT) / (df + PRIOR_WEIGHT)

    def compare(self, cand: dict[str, list[float]], inc: dict[str, list[float]]) -> Comparison:
        shared = [t for t in cand if cand[t] and inc.get(t)]
        if not shared:
            return Comparison(0.0, math.inf, 0)
        var = self.variance()
        delta = fmean(fmean(cand[t]) - fmean(inc[t]) for t in shared)
        se = math.sqrt(sum(var / len(cand[t]) + var / len(inc[t]) for t in shared)) / len(shared)
        return Comparison(delta, se, len(shared))


def mean_of_task_means(scores: dict[str, list[float]]) -> float | None:
    means = [fmean(v) for v in scores.values() if v]
    return fmean(means) if means else None
