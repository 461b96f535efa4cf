"""Populations of cells: known types, markers, library sizes, damaged cells, doublets.

* `celltypes` — a tissue of a few populations (one of them rare), an analyst's marker table
  that also lists populations absent from the data, optionally damaged cells (high
  mitochondrial share, few counts) and a technical depth difference between two halves of
  the cells (a sequencing-depth confounder that only normalisation removes). Options that
  give a task its trap: one population naturally rich in mitochondrial RNA (`mito_rich`,
  so a global mito cut-off removes healthy cells), B cells holding more RNA per cell
  (`size_ratio`, so raw-count fold changes are off by the size), populations present but
  missing from the marker table (`unlisted`: an annotation must call them unknown), and
  T cells made of two subtypes that differ in a few genes only (`subtypes`). These options
  draw from their own random stream, so a dataset without them is unchanged.
* `doublets` — the same, with droplets holding two cells injected from known parent pairs:
  their expected counts are the sum of the parents' (a bit less: capture is imperfect), so
  heterotypic doublets carry two populations' markers and about twice the counts.
  Homotypic doublets cannot be told from singlets by expression; their truth is left
  blank, so no grade asks for the impossible. Option `hashtags` pools that
  many samples, each cell stained with its sample's hashtag oligo (obs `HTO1`…: counts with
  a tag-specific background and staining strength), so cross-sample doublets carry two tags.
  Option `complexes` replaces that share of the singlets by droplets that each hold one cell
  of two given populations (cells that stick together through dissociation): one pair, drawn
  from its own random stream and never the two most abundant populations, so the droplets
  form a cluster of their own that carries both populations' markers (truth `complex_pair`).
"""

from __future__ import annotations

import numpy as np

from cellprompt.datasets.generate import splat
from cellprompt.datasets.generate.populations import (
    Populations,
    make_populations,
    normal_mito_share,
    set_mito_share,
)
from cellprompt.datasets.generate.result import Generated, build

COUNTS = "raw UMI counts"


def informative(pop: Populations, min_fold: float = 2.0) -> list[str]:
    """Genes whose mean differs >= `min_fold` between some two populations (HVG truth)."""
    spread = pop.factors.max(axis=0) / pop.factors.min(axis=0)
    return [pop.genes[j] for j in np.argsort(-spread) if spread[j] >= min_fold]


def celltypes(seed: int, cells: int = 2000, genes: int = 1500, types: int = 5,
              rare: float = 0.03, low_quality: float = 0.0, depth_ratio: float = 1.0,
              absent: int = 2, mito_rich: float = 0.0, size_ratio: float = 1.0,
              unlisted: int = 0, subtypes: bool = False) -> Generated:
    """Cells of `types` populations; truth: each cell's type, damage, depth half, library."""
    if not 0 <= unlisted < types - 1:
        raise ValueError("unlisted must leave at least two populations in the marker table")
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # the options' own stream (see the module doc)
    pop = make_populations(rng, genes, types, n_absent=absent)
    p = splat.proportions(rng, types, rare if rare > 0 else None)
    labels = splat.counts_per_group(rng, cells, p)
    share = normal_mito_share(rng, cells)
    if mito_rich > 0:  # healthy cells of the first population: mito share around `mito_rich`
        rich = labels == 0
        share[rich] = extra.beta(mito_rich * 120, (1 - mito_rich) * 120, size=rich.sum())
    damaged = np.zeros(cells, dtype=bool)
    if low_quality > 0:
        damaged[rng.choice(cells, size=round(cells * low_quality), replace=False)] = True
        healthy = share[damaged]
        share[damaged] = rng.uniform(0.2, 0.55, size=damaged.sum())
        if mito_rich > 0:  # damage adds to each cell's own baseline: no one cut-off fits all
            share[damaged] = healthy + extra.uniform(0.1, 0.4, size=damaged.sum())
    rel = set_mito_share(pop.relative(labels), pop.mito, share)
    subtype = _split_subtypes(extra, pop, labels, rel) if subtypes else None
    library = splat.library_sizes(rng, cells, mean=3000.0)
    library[damaged] *= rng.uniform(0.35, 0.9, size=damaged.sum())
    library[labels == 1] *= size_ratio  # B cells hold more (or less) RNA per cell
    deep = np.zeros(cells, dtype=bool)
    if depth_ratio != 1.0:
        deep[rng.choice(cells, size=cells // 2, replace=False)] = True
        library[deep] *= depth_ratio
    counts = splat.sample_counts(rng, splat.cell_means(rel, library))
    names = np.array(pop.types)[labels]
    obs: dict[str, object] = {"cell_type": names, "library_size": library}
    truth_obs = ["cell_type", "library_size"]
    if low_quality > 0:
        obs["low_quality"] = np.where(damaged, "low_quality", "ok")
        truth_obs.append("low_quality")
    if depth_ratio != 1.0:
        obs["run"] = np.where(deep, "run2", "run1")  # run2 was sequenced deeper
        truth_obs.append("run")
    if subtype is not None:
        obs["subtype"] = subtype
        truth_obs.append("subtype")
    kept = names[~damaged]
    b_markers = pop.table()[pop.types[1]]
    ok_b, ok_t = (labels == 1) & ~damaged, (labels == 0) & ~damaged
    truth = {
        "types": pop.types, "absent_types": list(pop.absent),
        "markers": pop.markers, "up_genes": {t: pop.up_genes(t) for t in pop.types},
        # one small dict per numeric answer: numeric graders score every field they are given
        "damaged": {"n_low_quality": int(damaged.sum())},
        "population_count": {"n_clusters": len(pop.types)},
        "proportions": {t: float(np.mean(kept == t)) for t in pop.types},
        "rare_type": pop.types[int(np.argmin(p))],
        "rare_markers": pop.markers[pop.types[int(np.argmin(p))]],
        "informative_genes": informative(pop),
        "unlisted_types": pop.types[types - unlisted:] if unlisted else [],
        # B cells over T cells, of the expected share of each cell's counts (CP10k's target)
        "b_vs_t_log2fc": {g: float(np.log2(rel[ok_b, j].mean() / rel[ok_t, j].mean()))
                          for g, j in zip(b_markers, pop.index(b_markers), strict=True)},
    }
    if subtype is not None:
        truth["subtype_count"] = {"n_subtypes": 2}
    table = {t: g for t, g in pop.table().items() if t not in truth["unlisted_types"]}
    uns = {"marker_genes": table, "truth": truth}
    return build(counts, pop.genes, obs, uns=uns, truth_obs=truth_obs,
                 description=f"{cells} cells x {genes} genes, {COUNTS}, from one tissue sample")


def _split_subtypes(rng: np.random.Generator, pop: Populations, labels: np.ndarray,
                    rel: np.ndarray, n_genes: int = 12, fold: float = 2.5) -> np.ndarray:
    """Split the first population in two subtypes, each raising its own `n_genes` by `fold`.

    The genes are moderately expressed non-markers, so the split is visible within the
    population but weak next to the differences between populations.
    """
    marked = set(pop.index([g for m in pop.markers.values() for g in m]).tolist())
    nuclear = np.flatnonzero(~pop.mito)
    eligible = [j for j in nuclear if pop.base[j] > np.quantile(pop.base[nuclear], 0.5)
                and j not in marked]
    genes = rng.choice(eligible, size=2 * n_genes, replace=False).reshape(2, n_genes)
    rows = np.flatnonzero(labels == 0)
    second = rng.random(len(rows)) < 0.4
    subtype = np.full(len(labels), None, dtype=object)
    for k, name in enumerate(("a", "b")):
        hit = rows[second if k else ~second]
        rel[np.ix_(hit, genes[k])] *= fold
        rel[hit] /= rel[hit].sum(axis=1, keepdims=True)
        subtype[hit] = f"{pop.types[0]} {name}"
    return subtype


def doublets(seed: int, cells: int = 2500, genes: int = 1200, types: int = 5,
             rate: float = 0.08, rare: float = 0.0, hashtags: int = 0,
             complexes: float = 0.0) -> Generated:
    """Singlets plus `rate` doublets from random parent pairs; truth: which cells, which pair."""
    if hashtags == 1 or hashtags > 8:
        raise ValueError("hashtags must be 0 (none) or 2 to 8 pooled samples")
    if not 0 <= complexes <= 0.3 or (complexes and hashtags):
        raise ValueError("complexes must be a share between 0 and 0.3, without hashtags")
    rng = np.random.default_rng(seed)
    pop = make_populations(rng, genes, types, n_absent=2)
    n_doublets = round(cells * rate)
    n_parents = cells + n_doublets  # singlets kept + two parents per doublet
    p = splat.proportions(rng, types, rare if rare > 0 else None)
    labels = splat.counts_per_group(rng, n_parents, p)
    rel = set_mito_share(pop.relative(labels), pop.mito, normal_mito_share(rng, n_parents))
    mu = splat.cell_means(rel, splat.library_sizes(rng, n_parents, mean=2500.0))
    order = rng.permutation(n_parents)
    first, second = order[:n_doublets], order[n_doublets:2 * n_doublets]
    singles = order[2 * n_doublets:]
    capture = rng.uniform(0.75, 1.0, size=n_doublets)[:, None]
    t = np.array(pop.types)
    stuck: list[np.ndarray] = []  # the complexes' expected counts (none by default)
    cx_pair = (0, 0)
    if complexes > 0:
        singles, stuck, cx_pair = _complexes(np.random.default_rng([seed, 2]), pop, p, singles,
                                             round(cells * complexes))
    mu = np.concatenate([mu[singles], (mu[first] + mu[second]) * capture, *stuck])
    counts = splat.sample_counts(rng, mu)
    n_cx = len(stuck[0]) if stuck else 0
    cx_name = "+".join(sorted(t[list(cx_pair)])) if n_cx else ""
    pair = np.array(["+".join(sorted((a, b))) for a, b in zip(t[labels[first]],
                                                              t[labels[second]], strict=True)]
                    + [cx_name] * n_cx)
    hetero = np.r_[labels[first] != labels[second], np.ones(n_cx, bool)]
    cell_type = np.concatenate([t[labels[singles]], pair])
    is_doublet = np.r_[np.zeros(len(singles), bool), np.ones(n_doublets + n_cx, bool)]
    detectable = np.concatenate([np.full(len(singles), "singlet", dtype=object),
                                 np.where(hetero, "doublet", np.full(np.shape(hetero), None, dtype=object))])
    obs = {"cell_type": cell_type, "doublet": np.where(is_doublet, "doublet", "singlet"),
           "heterotypic_doublet": detectable}
    truth_obs = ["cell_type", "doublet", "heterotypic_doublet"]
    if n_cx:
        obs["complex"] = np.r_[np.full(len(singles) + n_doublets, "other"),
                               np.full(n_cx, "complex")].astype(object)
        truth_obs.append("complex")
    if hashtags:
        extra = np.random.default_rng([seed, 1])  # the option's own stream
        obs.update(_hashtags(extra, hashtags, singles, first, second, n_parents))
        truth_obs.append("sample_call")
    shuffle = rng.permutation(cells)  # doublets are not the last rows
    obs = {k: np.asarray(v)[shuffle] for k, v in obs.items()}
    counts = counts[shuffle]
    het_pairs, n_pair = np.unique(pair[hetero], return_counts=True)
    truth = {
        "types": pop.types, "markers": pop.markers,
        "doublet_count": {"n_doublets": int(n_doublets + n_cx)},
        "doublet_rate": {"doublet_rate": float((n_doublets + n_cx) / cells)},
        "heterotypic_count": {"n_heterotypic": int(hetero.sum())},
        "pair_counts": {str(k): int(v) for k, v in zip(het_pairs, n_pair, strict=True)},
        "top_pair": sorted(str(het_pairs[int(np.argmax(n_pair))]).split("+")),
    }
    if n_cx:
        truth["complex_pair"] = sorted(cx_name.split("+"))
        truth["complex_count"] = {"n_complexes": int(n_cx)}
    uns = {"marker_genes": pop.table(), "truth": truth}
    return build(counts, pop.genes, obs, uns=uns, truth_obs=truth_obs,
                 description=f"{cells} droplets x {genes} genes, {COUNTS}, one 10x channel")


def _complexes(rng: np.random.Generator, pop: Populations, p: np.ndarray, singles: np.ndarray,
               n: int) -> tuple[np.ndarray, list[np.ndarray], tuple[int, int]]:
    """`n` droplets of one cell of population a and one of b, in place of `n` singlets.

    The pair is drawn among all pairs but that of the two most abundant populations (which
    random doublets already favour); each cell has its own library and mito share, and the
    droplet captures 75-100% of their sum, as a random doublet does.
    """
    if n >= len(singles):
        raise ValueError("complexes leave no singlets")
    top = tuple(sorted(np.argsort(-p)[:2].tolist()))
    pairs = [(a, b) for a in range(len(p)) for b in range(a + 1, len(p)) if (a, b) != top]
    a, b = pairs[int(rng.integers(len(pairs)))]
    labels = np.r_[np.full(n, a), np.full(n, b)]
    rel = set_mito_share(pop.relative(labels), pop.mito, normal_mito_share(rng, 2 * n))
    mu = splat.cell_means(rel, splat.library_sizes(rng, 2 * n, mean=2500.0))
    capture = rng.uniform(0.75, 1.0, size=n)[:, None]
    return singles[n:], [(mu[:n] + mu[n:]) * capture], (a, b)


def _hashtags(rng: np.random.Generator, n_samples: int, singles: np.ndarray, first: np.ndarray,
              second: np.ndarray, n_parents: int) -> dict[str, np.ndarray]:
    """Hashtag counts per droplet, and the call a perfect demultiplexer makes.

    Each tag has its own free-floating background (5-150 counts) and staining strength
    (signal 3-25 times its background); each cell takes up the stain with its own
    efficiency. A droplet's counts are its cells' signals plus the background, gamma-Poisson.
    A doublet of two samples carries both tags ("doublet"); one of a single sample looks
    like a singlet of it, so its truth is blank.
    """
    sample = rng.integers(0, n_samples, size=n_parents)
    background = rng.uniform(5, 150, size=n_samples)
    signal = background * rng.uniform(3, 25, size=n_samples)
    uptake = rng.lognormal(0.0, 0.35, size=n_parents)
    def stain(cells: np.ndarray) -> np.ndarray:
        return np.eye(n_samples)[sample[cells]] * signal * uptake[cells, None]
    mean = background + np.concatenate([stain(singles), stain(first) + stain(second)])
    lam = rng.gamma(4.0, mean / 4.0)
    counts = rng.poisson(lam)
    names = np.array([f"S{k + 1}" for k in range(n_samples)], dtype=object)
    call = np.concatenate([names[sample[singles]],
                           np.where(sample[first] != sample[second], "doublet",
                                    np.full(len(first), None, dtype=object))])
    out = {f"HTO{k + 1}": counts[:, k].astype(np.int64) for k in range(n_samples)}
    out["sample_call"] = call
    return out
