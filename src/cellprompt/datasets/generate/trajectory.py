"""A branching differentiation with known time and branch (scanpy's `sim` models, redone).

Progenitors express an `early` programme; cells pass two transient trunk programmes and,
after the split, take one of `branches` lineages, each with a transient and a terminal
programme. Transient programmes switch off again, so a cell late on a branch is no
farther from the progenitors in expression space than a mid-trunk cell: only an ordering
along the manifold (diffusion pseudotime, graph distance) recovers time, and a Euclidean
distance to the root does not. Programmes move genes by 2–3.5 log units on top of
Splatter gene means, with gamma–Poisson noise (`splat.sample_counts`).

Truth: `obs['sim_time']` (0..1), `obs['branch']` (`trunk` before the split, else the
lineage letter), and `uns['truth']` with each lineage's terminal genes. The progenitor
markers are *given* (`uns['progenitor_markers']`): an analyst knows where development
starts; finding that start in the data is part of the work.
"""

from __future__ import annotations

import numpy as np

from cellprompt.datasets.generate import splat
from cellprompt.datasets.generate.result import Generated, build

SPLIT = 0.42


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def trajectory(seed: int, cells: int = 1500, genes: int = 600, branches: int = 2,
               per_programme: int = 15, end_onset: float = 0.68,
               landmark: bool = False) -> Generated:
    """Cells along a trunk that splits into `branches` lineages; truth: time and branch.

    `end_onset`: the time each lineage's terminal programme starts to rise (earlier: it
    overlaps the lineage's transient programme, so a branch runs on without a gap to its
    end). `landmark`: name the top transient gene of lineage A in `uns['branch_landmark']`.
    """
    if not 2 <= branches <= 4:
        raise ValueError("branches must be 2, 3 or 4")
    if not SPLIT < end_onset < 1:
        raise ValueError(f"end_onset must lie between the split ({SPLIT}) and 1")
    rng = np.random.default_rng(seed)
    letters = "ABCD"[:branches]
    ramp = 0.32 if end_onset == 0.68 else 1 - end_onset  # 0.32 exactly: old data unchanged
    t = rng.uniform(0, 1, size=cells)
    lineage = rng.integers(0, branches, size=cells)
    activity = {"early": np.clip(1 - t / 0.25, 0, 1), "trunk1": _bump(t, 0.17, 0.07),
                "trunk2": _bump(t, 0.35, 0.07)}
    for b, letter in enumerate(letters):
        on = lineage == b
        activity[f"{letter}_mid"] = np.where(on, _bump(t, 0.6, 0.08), 0.0)
        activity[f"{letter}_end"] = np.where(on, np.clip((t - end_onset) / ramp, 0, 1), 0.0)
    names = splat.gene_names(rng, genes)
    base = splat.gene_means(rng, genes, outlier_prob=0.0)
    eligible = np.flatnonzero(base > np.quantile(base, 0.3))
    g = per_programme
    if len(activity) * g > len(eligible):
        raise ValueError("too few genes for the programmes: raise `genes`")
    picked = rng.choice(eligible, size=len(activity) * g, replace=False).reshape(len(activity), g)
    log_fold = np.zeros((cells, genes))
    programme_genes: dict[str, list[str]] = {}
    for i, (name, level) in enumerate(activity.items()):
        gain = rng.uniform(2.0, 3.5, size=g)
        log_fold[:, picked[i]] = level[:, None] * gain[None, :]
        programme_genes[name] = [names[j] for j in picked[i][np.argsort(-gain)]]
    library = splat.library_sizes(rng, cells, mean=3000.0, scale=0.3)
    mu = splat.cell_means(base[None, :] * np.exp(log_fold), library)
    counts = splat.sample_counts(rng, mu, bcv=0.12)
    branch = np.where(t < SPLIT, "trunk", np.array(list(letters))[lineage])
    # committed cells, well past the split: the ones a lineage assignment is graded on
    committed = np.where(t >= SPLIT + 0.12, np.array(list(letters), dtype=object)[lineage],
                         np.full(np.shape(t), None, dtype=object))
    truth = {
        "branches": list(letters), "split_time": SPLIT,
        "terminal_genes": {b: programme_genes[f"{b}_end"] for b in letters},
        "transient_genes": {b: programme_genes[f"{b}_mid"] for b in letters},
        "lineage_count": {"n_lineages": branches},
    }
    uns = {"progenitor_markers": sorted(programme_genes["early"]), "truth": truth}
    if landmark:  # a gene the analyst is told about: it switches on mid-way along lineage A
        uns["branch_landmark"] = programme_genes["A_mid"][0]
    return build(counts, names, {"sim_time": t, "branch": branch, "lineage": committed}, uns=uns,
                 truth_obs=["sim_time", "branch", "lineage"],
                 description=f"{cells} cells x {genes} genes, raw UMI counts, from a "
                             "differentiating culture")
