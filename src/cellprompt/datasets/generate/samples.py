"""Several samples of one tissue: batch effects, and conditions compared with replicates.

* `batches` — the same populations profiled in several batches. Each batch multiplies
  every gene by its own log-normal factor and has its own sequencing depth, so cells
  cluster by batch before correction; the populations' mix differs between batches, and
  optionally one population exists in the first batch only (an integration that forces
  every population into every batch has over-corrected). With `labelled`, the first
  batch arrives annotated (`obs['label']`, empty elsewhere): the reference a label
  transfer maps the other batches onto.
* `conditions` — replicate samples (donors) of two conditions. Donors shift every gene a
  little (log-normal, per donor), so cells of one donor are not independent replicates; in
  the treated condition one population expands, one shrinks, and one population switches a
  set of genes up and down. Truth: which populations expanded and shrank (and by how much,
  from the generating proportions), and which genes respond in that population.
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


def batches(seed: int, cells: int = 2400, genes: int = 1200, batches: int = 3, types: int = 5,
            strength: float = 0.5, specific: bool = True, labelled: bool = False) -> Generated:
    """Cells of `types` populations in `batches` batches; truth: each cell's population."""
    rng = np.random.default_rng(seed)
    pop = make_populations(rng, genes, types, n_absent=1)
    batch = splat.counts_per_group(rng, cells, np.full(batches, 1.0 / batches))
    p = splat.proportions(rng, types)
    labels = np.empty(cells, dtype=int)
    present: dict[str, list[str]] = {}
    for b in range(batches):
        mix = rng.dirichlet(p * 40)
        if specific and types > 2:  # the last population lives in the first batch only
            mix[-1] = 0.08 if b == 0 else 0.0
            mix = mix / mix.sum()
        rows = np.flatnonzero(batch == b)
        labels[rows] = splat.counts_per_group(rng, len(rows), mix)
        present[f"batch{b + 1}"] = sorted({pop.types[i] for i in labels[rows]})
    rel = set_mito_share(pop.relative(labels), pop.mito, normal_mito_share(rng, cells))
    effect = rng.lognormal(0.0, strength, size=(batches, len(pop.genes)))
    rel = rel * effect[batch]
    depth = rng.uniform(1800, 4500, size=batches)
    library = splat.library_sizes(rng, cells, mean=1.0, scale=0.3) * depth[batch]
    counts = splat.sample_counts(rng, splat.cell_means(rel, library))
    names = np.array(pop.types)[labels]
    truth = {"types": pop.types, "markers": pop.markers, "types_per_batch": present,
             "batch_specific": [pop.types[-1]] if specific and types > 2 else [],
             "population_count": {"n_clusters": types}}
    obs: dict[str, np.ndarray] = {"batch": np.array([f"batch{b + 1}" for b in batch]),
                                  "cell_type": names}
    if labelled:
        given = names.astype(object)
        given[batch != 0] = None
        obs["label"] = given
    uns = {"marker_genes": pop.table(), "truth": truth}
    return build(counts, pop.genes, obs, uns=uns, truth_obs=["cell_type"],
                 description=f"{cells} cells x {genes} genes, raw UMI counts, pooled from "
                             f"{batches} processing batches (obs['batch'])")


def conditions(seed: int, cells: int = 3000, genes: int = 1000, types: int = 5,
               replicates: int = 4, fold: float = 3.0, n_de: int = 20, donor_sd: float = 0.25,
               de_fold: float = 2.5) -> Generated:
    """Replicate samples of control and treated tissue; truth: composition and DE response."""
    rng = np.random.default_rng(seed)
    pop = make_populations(rng, genes, types, n_absent=1)
    p = splat.proportions(rng, types, concentration=20.0)
    # the responding population is fixed (Monocyte) so an objective can name it for any seed
    responder = pop.types.index("Monocyte") if "Monocyte" in pop.types else types - 1
    order = rng.permutation([i for i in range(types) if i != responder])
    up, down = int(order[0]), int(order[1])
    treated_p = p.copy()
    treated_p[up] *= fold
    treated_p[down] /= fold
    treated_p /= treated_p.sum()
    n_samples = 2 * replicates
    sizes = splat.counts_per_group(rng, cells, rng.dirichlet(np.full(n_samples, 30.0)))
    sample = np.empty(cells, dtype=int)
    labels = np.empty(cells, dtype=int)
    start = 0
    for s, rows in enumerate(np.bincount(sizes, minlength=n_samples)):
        base = treated_p if s >= replicates else p
        idx = np.arange(start, start + rows)
        sample[idx] = s
        labels[idx] = splat.counts_per_group(rng, rows, rng.dirichlet(base * 150))
        start += rows
    treated = sample >= replicates
    nuclear = np.flatnonzero(~pop.mito)
    eligible = nuclear[pop.base[nuclear] > np.quantile(pop.base[nuclear], 0.4)]
    marker_idx = set(pop.index([g for m in pop.markers.values() for g in m]))
    eligible = np.array([g for g in eligible if g not in marker_idx])
    de = rng.choice(eligible, size=2 * n_de, replace=False)
    rel = set_mito_share(pop.relative(labels), pop.mito, normal_mito_share(rng, cells))
    response = np.ones(len(pop.genes))
    response[de[:n_de]] = de_fold * rng.uniform(1.0, 1.4, size=n_de)
    response[de[n_de:]] = 1.0 / (de_fold * rng.uniform(1.0, 1.4, size=n_de))
    hit = treated & (labels == responder)
    rel[hit] *= response[None, :]
    donor = rng.lognormal(0.0, donor_sd, size=(n_samples, len(pop.genes)))
    rel *= donor[sample]
    library = splat.library_sizes(rng, cells, mean=3000.0)
    counts = splat.sample_counts(rng, splat.cell_means(rel, library))
    shuffle = rng.permutation(cells)
    counts, sample, labels, treated = counts[shuffle], sample[shuffle], labels[shuffle], treated[shuffle]
    names = np.array(pop.types)
    # realised, as an analyst would measure it: mean per-sample share, treated over control
    share = np.zeros((n_samples, types))
    for s in range(n_samples):
        share[s] = np.bincount(labels[sample == s], minlength=types) / max((sample == s).sum(), 1)
    ratio = share[replicates:].mean(axis=0) / np.maximum(share[:replicates].mean(axis=0), 1e-9)
    log2fc = {str(names[i]): float(np.log2(max(ratio[i], 1e-9))) for i in range(types)}
    truth = {
        "types": pop.types, "markers": pop.markers,
        "expanded": [str(names[up])], "depleted": [str(names[down])],
        "log2fc_proportion": log2fc,
        "expanded_fc": {"log2fc_expanded": log2fc[str(names[up])]},
        "depleted_fc": {"log2fc_depleted": log2fc[str(names[down])]},
        "responder": str(names[responder]),
        "responders": [str(names[responder])],  # as a list, for set-valued answers
        "de_up": [pop.genes[g] for g in de[:n_de]], "de_down": [pop.genes[g] for g in de[n_de:]],
        "de_genes": sorted(pop.genes[g] for g in de),
        "de_count": {"n_de_genes": 2 * n_de},
    }
    ids = [f"S{i + 1}" for i in rng.permutation(n_samples)]  # ids do not encode the condition
    obs = {"sample": np.array(ids)[sample], "condition": np.where(treated, "treated", "control"),
           "cell_type": names[labels]}
    uns = {"marker_genes": pop.table(), "truth": truth}
    return build(counts, pop.genes, obs, uns=uns, truth_obs=["cell_type"],
                 description=f"{cells} cells x {genes} genes, raw UMI counts, {n_samples} "
                             "samples (obs['sample']) from two conditions (obs['condition'])")
