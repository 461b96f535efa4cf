"""Cell populations with known marker and DE genes, on top of the Splatter gene model.

Every population raises its own block of exclusive marker genes (several-fold, the way a
lineage gene marks a cell type) and shifts a few percent of the other genes up or down
(the softer differences real populations also have). The truth a task can be graded on —
which genes mark which population, which genes are up in it — is read off these factors,
not off any method's output. Marker tables may also list populations that are *absent*
from the data, with marker genes that behave like every other gene: an annotation that
calls them has hallucinated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cellprompt.datasets.generate import splat

TYPE_NAMES = ("T cell", "B cell", "NK cell", "Monocyte", "Dendritic cell", "Plasma cell",
              "Megakaryocyte", "Erythroid progenitor", "Mast cell", "Neutrophil")


@dataclass
class Populations:
    """Genes, their means, and each population's multiplicative effect on them."""

    genes: list[str]
    base: np.ndarray
    types: list[str]
    factors: np.ndarray  # len(types) x len(genes)
    markers: dict[str, list[str]]  # exclusive marker genes, strongest first
    mito: np.ndarray  # boolean mask of mitochondrial genes (all False without them)
    absent: dict[str, list[str]] = field(default_factory=dict)  # markers of absent types

    def index(self, names: list[str]) -> np.ndarray:
        where = {g: i for i, g in enumerate(self.genes)}
        return np.array([where[g] for g in names], dtype=int)

    def up_genes(self, t: str, min_fold: float = 2.0) -> list[str]:
        """Genes whose mean in `t` is >= `min_fold` times their mean over the other types."""
        i = self.types.index(t)
        others = np.delete(self.factors, i, axis=0).mean(axis=0)
        fold = self.factors[i] / others
        order = np.argsort(-fold)
        return [self.genes[j] for j in order if fold[j] >= min_fold]

    def table(self, k: int = 5) -> dict[str, list[str]]:
        """A marker table as an analyst receives one: present and absent types, `k` genes each."""
        rows = {t: g[:k] for t, g in self.markers.items()}
        rows.update({t: g[:k] for t, g in self.absent.items()})
        return dict(sorted(rows.items()))

    def relative(self, labels: np.ndarray) -> np.ndarray:
        """Relative expression profile of every cell (its population's factors on `base`)."""
        return self.base[None, :] * self.factors[labels]


def type_names(n_types: int, n_absent: int = 0) -> tuple[list[str], list[str]]:
    """Fixed names for a given size, so an objective can name a population for any seed."""
    if n_types + n_absent > len(TYPE_NAMES):
        raise ValueError(f"at most {len(TYPE_NAMES)} populations (present + absent)")
    return list(TYPE_NAMES[:n_types]), list(TYPE_NAMES[n_types:n_types + n_absent])


def make_populations(rng: np.random.Generator, n_genes: int, n_types: int, *,
                     n_markers: int = 20, n_absent: int = 0, de_prob: float = 0.04,
                     marker_loc: float = 1.6, mito: bool = True) -> Populations:
    """`n_types` populations over `n_genes` genes (13 of them mitochondrial when `mito`)."""
    n_mito = len(splat.MITO_GENES) if mito else 0
    n_nuclear = n_genes - n_mito
    names = splat.gene_names(rng, n_nuclear)
    base = splat.gene_means(rng, n_nuclear)
    types, absent_types = type_names(n_types, n_absent)
    # marker genes are drawn among moderately to highly expressed genes, as real ones are
    eligible = np.flatnonzero(base > np.quantile(base, 0.35))
    picked = rng.choice(eligible, size=(n_types + n_absent) * n_markers, replace=False)
    blocks = picked.reshape(n_types + n_absent, n_markers)
    factors = np.ones((n_types, n_nuclear))
    taken = np.zeros(n_nuclear, dtype=bool)
    taken[picked] = True
    markers: dict[str, list[str]] = {}
    for t in range(n_types):
        fold = splat.de_factors(rng, n_markers, loc=marker_loc, scale=0.35)
        factors[t, blocks[t]] = fold
        order = np.argsort(-fold)
        markers[types[t]] = [names[blocks[t][j]] for j in order]
        soft = (rng.random(n_nuclear) < de_prob) & ~taken
        factors[t, soft] = splat.de_factors(rng, int(soft.sum()), loc=0.5, scale=0.25,
                                            down_prob=0.5)
    absent = {absent_types[a]: [names[g] for g in blocks[n_types + a]] for a in range(n_absent)}
    genes, mito_mask = names, np.zeros(n_nuclear, dtype=bool)
    if mito:
        mito_base = np.full(n_mito, np.median(base) * 6.0)
        genes = [*names, *splat.MITO_GENES]
        base = np.concatenate([base, mito_base])
        factors = np.concatenate([factors, np.ones((n_types, n_mito))], axis=1)
        mito_mask = np.concatenate([mito_mask, np.ones(n_mito, dtype=bool)])
    return Populations(genes=genes, base=base, types=types, factors=factors, markers=markers,
                       absent=absent, mito=mito_mask)


def set_mito_share(relative: np.ndarray, mito: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Rescale each cell's profile so mitochondrial genes carry `share` of it (in place)."""
    nuclear = relative[:, ~mito].sum(axis=1)
    m = relative[:, mito].sum(axis=1)
    relative[:, ~mito] *= ((1 - share) / nuclear)[:, None]
    relative[:, mito] *= (share / m)[:, None]
    return relative


def normal_mito_share(rng: np.random.Generator, n: int) -> np.ndarray:
    """Healthy cells: 1–8% of counts from mitochondrial genes (a beta around 3.5%)."""
    return np.clip(rng.beta(7, 190, size=n), 0.005, 0.09)
