"""Droplets with ambient RNA: cells contaminated by a known soup, plus empty droplets.

Lysed cells release RNA into the loading buffer; every droplet captures some of it. Here
the soup is the population-weighted mean profile with one fragile population over-
represented (it lyses most), each cell's counts are a mix `(1 - rho_c) * own + rho_c *
soup` with a per-cell contamination `rho_c`, and empty droplets hold soup alone at a few
dozen UMIs. So a population's exclusive markers appear at low levels in every other
population — the signature SoupX and CellBender estimate `rho` from — and the empty
droplets give the soup's profile directly.

Truth: `obs['droplet']` (cell / empty), `obs['contamination']` (rho per cell, NaN in empty
droplets), `obs['cell_type']`, and `uns['truth']` with the mean contamination and the
soup's top genes.
"""

from __future__ import annotations

import numpy as np

from cellprompt.datasets.generate import splat
from cellprompt.datasets.generate.populations import (
    make_populations,
    normal_mito_share,
    set_mito_share,
)
from cellprompt.datasets.generate.result import Generated, build


def ambient(seed: int, cells: int = 1500, genes: int = 1000, types: int = 5, empty: int = 3000,
            rho: float = 0.12, fragile_weight: float = 4.0) -> Generated:
    """`cells` contaminated cells and `empty` soup-only droplets; truth: rho and the soup."""
    rng = np.random.default_rng(seed)
    pop = make_populations(rng, genes, types, n_absent=1)
    p = splat.proportions(rng, types)
    labels = splat.counts_per_group(rng, cells, p)
    own = set_mito_share(pop.relative(labels), pop.mito, normal_mito_share(rng, cells))
    own /= own.sum(axis=1, keepdims=True)
    fragile = int(rng.integers(types))
    weight = p.copy()
    weight[fragile] *= fragile_weight
    profiles = pop.base[None, :] * pop.factors
    profiles /= profiles.sum(axis=1, keepdims=True)
    soup = (weight[:, None] * profiles).sum(axis=0)
    soup /= soup.sum()
    contamination = np.clip(rng.normal(rho, rho * 0.25, size=cells), 0.01, 0.6)
    mixed = (1 - contamination)[:, None] * own + contamination[:, None] * soup[None, :]
    library = splat.library_sizes(rng, cells, mean=3000.0, scale=0.4)
    cell_counts = splat.sample_counts(rng, mixed * library[:, None])
    empty_library = rng.lognormal(np.log(35), 0.5, size=empty)
    empty_counts = rng.poisson(empty_library[:, None] * soup[None, :]).astype(np.float32)
    counts = np.concatenate([cell_counts, empty_counts])
    shuffle = rng.permutation(cells + empty)
    droplet = np.r_[np.full(cells, "cell", dtype=object), np.full(empty, "empty", dtype=object)]
    kind = np.concatenate([np.array(pop.types, dtype=object)[labels],
                           np.full(empty, None, dtype=object)])
    rho_col = np.r_[contamination, np.full(empty, np.nan)]
    top = np.argsort(-soup)[:20]
    truth = {
        "types": pop.types, "markers": pop.markers, "fragile_type": pop.types[fragile],
        "contamination": {"mean_contamination": float(contamination.mean())},
        "cell_count": {"n_cells": cells},
        "soup_top_genes": [pop.genes[g] for g in top],
    }
    obs = {"droplet": droplet[shuffle], "contamination": rho_col[shuffle],
           "cell_type": kind[shuffle]}
    uns = {"marker_genes": pop.table(), "truth": truth}
    return build(counts[shuffle], pop.genes, obs, uns=uns,
                 truth_obs=["droplet", "contamination", "cell_type"],
                 description=f"{cells + empty} barcodes x {genes} genes, raw UMI counts, "
                             "unfiltered output of one 10x channel")
