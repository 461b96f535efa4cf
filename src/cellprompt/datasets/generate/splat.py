"""The counting model every generator shares: Splatter's gamma–Poisson, written in numpy.

Why not a simulator from PyPI: Splatter (Zappia et al. 2017) is the reference model for
UMI counts, but it is R; its Python descendants either need R (`scdesign3py`), are
gene-network simulators far too slow for a 10-second budget (SERGIO), or pull in a deep
learning stack (`scdesigner`). The model itself is a few lines, and owning them lets every
generator place its truth exactly (which genes are DE, by how much, in which cells) and
stay deterministic from one seed with numpy's `Generator` alone.

Splatter's steps, as used here:
* gene means `base_g ~ Gamma(shape, rate)`, a few outlier genes scaled up (log-normal);
* a library size per cell `L_c ~ LogNormal(log(mean), scale)`;
* group effects as multiplicative factors on `base` (DE genes: log-normal factors);
* cell means `mu_cg = L_c * base_g * f_cg / sum_g(base_g * f_cg)`;
* biological coefficient of variation `BCV_cg = (bcv + 1/sqrt(mu_cg)) * sqrt(df / chi2_df)`
  (one chi-square draw per gene), counts `~ Poisson(Gamma(1/BCV², mu·BCV²))`.
No zero inflation: UMI data do not need it.
"""

from __future__ import annotations

import numpy as np

MITO_GENES = ("MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3", "MT-ND3",
              "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB")


def gene_names(rng: np.random.Generator, n: int) -> list[str]:
    """Opaque, unique gene ids (`G` + five digits): nothing a model could know by heart."""
    numbers = rng.choice(90_000, size=n, replace=False) + 10_000
    return [f"G{v:05d}" for v in numbers]


def gene_means(rng: np.random.Generator, n: int, shape: float = 0.6, rate: float = 0.3,
               outlier_prob: float = 0.03, outlier_loc: float = 1.5,
               outlier_scale: float = 0.5) -> np.ndarray:
    """Relative abundance of every gene (Splatter's gene means, with expression outliers)."""
    base = rng.gamma(shape, 1.0 / rate, size=n) + 1e-3
    outlier = rng.random(n) < outlier_prob
    base[outlier] = np.median(base) * rng.lognormal(outlier_loc, outlier_scale, size=outlier.sum())
    return base


def library_sizes(rng: np.random.Generator, n: int, mean: float = 3000.0,
                  scale: float = 0.35) -> np.ndarray:
    """Total expected UMIs per cell: log-normal around `mean`."""
    return rng.lognormal(np.log(mean), scale, size=n)


def de_factors(rng: np.random.Generator, n: int, loc: float = 1.2, scale: float = 0.3,
               down_prob: float = 0.0) -> np.ndarray:
    """Multiplicative DE factors (log-normal, > 1), a fraction turned into down-regulation."""
    f = rng.lognormal(loc, scale, size=n)
    down = rng.random(n) < down_prob
    f[down] = 1.0 / f[down]
    return f


def cell_means(relative: np.ndarray, library: np.ndarray) -> np.ndarray:
    """Expected counts: each cell's relative profile scaled to its library size."""
    relative = np.asarray(relative, dtype=np.float64)
    return relative / relative.sum(axis=1, keepdims=True) * library[:, None]


def sample_counts(rng: np.random.Generator, mu: np.ndarray, bcv: float = 0.15,
                  df: float = 60.0) -> np.ndarray:
    """Gamma–Poisson counts around `mu` with Splatter's mean-dependent BCV (float32, dense)."""
    gene_scale = np.sqrt(df / rng.chisquare(df, size=mu.shape[1]))
    cv = (bcv + 1.0 / np.sqrt(np.maximum(mu, 1e-8))) * gene_scale[None, :]
    shape = 1.0 / cv**2
    lam = rng.gamma(shape, mu / shape)
    return rng.poisson(lam).astype(np.float32)


def proportions(rng: np.random.Generator, k: int, rare: float | None = None,
                concentration: float = 8.0) -> np.ndarray:
    """Group proportions: a Dirichlet draw kept above 5%, one group optionally rare."""
    while True:
        p = rng.dirichlet(np.full(k, concentration))
        if p.min() >= 0.05:
            break
    if rare is not None:
        p[-1] = 0.0
        p = p / p.sum() * (1 - rare)
        p[-1] = rare
    return p


def counts_per_group(rng: np.random.Generator, n: int, p: np.ndarray) -> np.ndarray:
    """Group of every cell with the counts fixed by `p` (largest remainder), then shuffled."""
    exact = p * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(exact - counts)[::-1][: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(p)), counts))
