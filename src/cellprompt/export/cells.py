"""How the report writes a number and a confidence interval: one rule for every table.

A bootstrap of one or two values is not an interval: one trial scoring 1 gives
[1.000, 1.000], which reads as certainty. Below `MIN_N` the report says
"n too small" instead, wherever a CI would stand.
"""

from __future__ import annotations

import math

MIN_N = 3  # fewer values (trials, judged trials, pairs) than this get no CI


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def ci_text(low: float | None, high: float | None, n: int, digits: int = 3) -> str:
    """`[low, high]`, or a plain note when `n` values cannot support a CI."""
    if n < MIN_N:
        return f"n too small (n={n})"
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def group_label(run_id: str, prompt_id: str, model: str, several_runs: bool) -> str:
    """A (run,) prompt × model as every table and figure of the report names it."""
    label = f"{prompt_id} × {model}"
    return f"{run_id}: {label}" if several_runs else label
