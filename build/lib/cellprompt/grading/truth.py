"""How grader configs point into withheld truth.

Materialisation produces `truth = {"obs": {col: {cell_id: value}}, "var": {...},
"uns": {key: json}, ...}`. A config names a part either with `truth_obs: COL`
(per-cell labels) or with `truth_path: [section, key, ...]` (anything else,
e.g. ["uns", "rank_genes_groups", "names", "CD19+ B"]).
"""

from __future__ import annotations

from typing import Any

from cellprompt.errors import GradingError


def lookup(truth: dict[str, Any] | None, path: list[str], grader: str) -> Any:
    """Follow `path` into `truth`, failing with the missing step named."""
    if truth is None:
        raise GradingError(f"{grader} grader reads withheld truth {'/'.join(path)} but none was "
                           "given: grade through the task (materialise it) or pass truth=")
    node: Any = truth
    for i, key in enumerate(path):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise GradingError(f"{grader} grader: withheld truth has no {'/'.join(path[:i + 1])}; "
                               "withhold it in the task's `withhold` section")
    return node


def obs_labels(truth: dict[str, Any] | None, column: str, grader: str) -> dict[str, Any]:
    """Per-cell values of a withheld obs column."""
    labels = lookup(truth, ["obs", column], grader)
    if not isinstance(labels, dict):
        raise GradingError(f"{grader} grader: truth obs/{column} is not a cell -> value mapping")
    return labels
