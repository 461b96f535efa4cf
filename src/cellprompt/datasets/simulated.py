"""Generated datasets with known truth: they cannot be memorised or found in a library.

`cellcycle_sim` holds raw counts of cells from three cell types, each cell in G1, S or
G2M; S and G2M cells raise the S and G2M programmes of Tirosh et al. (2016), the lists
Seurat ships as `cc.genes` and scanpy's tutorial uses. The lists travel in
`uns['cell_cycle_genes']` so the task tests analysis, not recall of a gene list; the
simulated phase is in `obs['phase']` (withheld by tasks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import anndata as ad

S_GENES = (
    "MCM5", "PCNA", "TYMS", "FEN1", "MCM2", "MCM4", "RRM1", "UNG", "GINS2", "MCM6", "CDCA7", "DTL",
    "PRIM1", "UHRF1", "MLF1IP", "HELLS", "RFC2", "RPA2", "NASP", "RAD51AP1", "GMNN", "WDR76",
    "SLBP", "CCNE2", "UBR7", "POLD3", "MSH2", "ATAD2", "RAD51", "RRM2", "CDC45", "CDC6", "EXO1",
    "TIPIN", "DSCC1", "BLM", "CASP8AP2", "USP1", "CLSPN", "POLA1", "CHAF1B", "BRIP1", "E2F8"
)
G2M_GENES = (
    "HMGB2", "CDK1", "NUSAP1", "UBE2C", "BIRC5", "TPX2", "TOP2A", "NDC80", "CKS2", "NUF2", "CKS1B",
    "MKI67", "TMPO", "CENPF", "TACC3", "FAM64A", "SMC4", "CCNB2", "CKAP2L", "CKAP2", "AURKB",
    "BUB1", "KIF11", "ANP32E", "TUBB4B", "GTSE1", "KIF20B", "HJURP", "CDCA3", "HN1", "CDC20", "TTK",
    "CDC25C", "KIF2C", "RANGAP1", "NCAPD2", "DLGAP5", "CDCA2", "CDCA8", "ECT2", "KIF23", "HMMR",
    "AURKA", "PSRC1", "ANLN", "LBR", "CKAP5", "CENPE", "CTCF", "NEK2", "G2E3", "GAS2L3", "CBX5",
    "CENPA"
)
PHASES = ("G1", "S", "G2M")


def cellcycle_sim(seed: int = 20160401, n_cells: int = 900, n_background: int = 600) -> ad.AnnData:
    """Raw UMI counts of cycling cells of three types, with their true phase in obs."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    genes = [*S_GENES, *G2M_GENES, *(f"GENE{i:04d}" for i in range(n_background))]
    n_s, n_g2m = len(S_GENES), len(G2M_GENES)
    base = rng.gamma(shape=0.6, scale=1.5, size=len(genes)) + 0.05  # relative abundance
    base[: n_s + n_g2m] = rng.gamma(shape=2.0, scale=0.6, size=n_s + n_g2m) + 0.1
    cell_type = rng.choice(3, size=n_cells, p=[0.45, 0.35, 0.20])
    phase = rng.choice(3, size=n_cells, p=[0.5, 0.3, 0.2])
    type_effect = np.ones((3, len(genes)))
    for t in range(3):  # each type raises its own 60 background genes
        chosen = n_s + n_g2m + rng.choice(n_background, size=60, replace=False)
        type_effect[t, chosen] = rng.uniform(3, 8, size=60)
    phase_effect = np.ones((3, len(genes)))
    phase_effect[:, : n_s + n_g2m] = 0.4  # cycling genes are at their lowest in G1
    phase_effect[1, :n_s] = rng.uniform(2, 4, size=n_s)  # S: replication genes
    phase_effect[2, n_s : n_s + n_g2m] = rng.uniform(2, 4, size=n_g2m)  # G2M: mitosis genes
    phase_effect[2, :n_s] = 0.8  # late S genes linger into G2
    size = rng.lognormal(mean=np.log(2500), sigma=0.35, size=n_cells) * np.where(
        phase == 2, 1.3, 1.0
    )
    mu = base[None, :] * type_effect[cell_type] * phase_effect[phase]
    mu = mu / mu.sum(axis=1, keepdims=True) * size[:, None]
    r = 5.0  # negative binomial dispersion: gamma-Poisson
    counts = rng.poisson(rng.gamma(shape=r, scale=mu / r)).astype(np.float32)
    obs = pd.DataFrame(
        {"phase": pd.Categorical([PHASES[p] for p in phase], categories=PHASES)},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.uns["cell_cycle_genes"] = {"S": list(S_GENES), "G2M": list(G2M_GENES)}
    return adata


PROGRAMMES = ("early", "trunk1", "trunk2", "a_mid", "a_end", "b_mid", "b_end")


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def trajectory_sim(seed: int = 20190611, n_cells: int = 800, genes_per_programme: int = 15,
                   n_background: int = 250) -> ad.AnnData:
    """Raw counts along a branching differentiation with transient gene programmes.

    Progenitors express the `early` programme; cells then pass two transient trunk
    programmes and split into branch A or B, each with a transient and a terminal
    programme. Transient programmes switch off again, so a cell late on a branch is no
    farther from the progenitors in expression space than a mid-trunk cell: only an
    ordering along the manifold (diffusion pseudotime, graph distance) recovers time.
    `obs['sim_time']` (0..1) and `obs['branch']` (A/B; trunk cells before the split are
    on both) are the truth; `uns['progenitor_markers']` names the early genes.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, size=n_cells)
    branch = rng.choice(["A", "B"], size=n_cells)
    split = 0.45
    activity = {
        "early": np.clip(1 - t / 0.25, 0, 1),
        "trunk1": _bump(t, 0.2, 0.08),
        "trunk2": _bump(t, 0.4, 0.08),
        "a_mid": np.where(branch == "A", _bump(t, 0.62, 0.09), 0.0),
        "a_end": np.where(branch == "A", np.clip((t - 0.7) / 0.3, 0, 1), 0.0),
        "b_mid": np.where(branch == "B", _bump(t, 0.62, 0.09), 0.0),
        "b_end": np.where(branch == "B", np.clip((t - 0.7) / 0.3, 0, 1), 0.0),
    }
    g = genes_per_programme
    n_genes = g * len(PROGRAMMES) + n_background
    base = rng.gamma(shape=1.0, scale=1.0, size=n_genes) + 0.1
    log_fold = np.zeros((n_cells, n_genes))
    for i, name in enumerate(PROGRAMMES):
        gain = rng.uniform(2.0, 3.5, size=g)  # log fold at full activity
        log_fold[:, i * g:(i + 1) * g] = activity[name][:, None] * gain[None, :]
    mu = base[None, :] * np.exp(log_fold)
    size = rng.lognormal(mean=np.log(3000), sigma=0.3, size=n_cells)
    mu = mu / mu.sum(axis=1, keepdims=True) * size[:, None]
    counts = rng.poisson(rng.gamma(shape=8.0, scale=mu / 8.0)).astype(np.float32)
    genes = [f"G{i + 1:04d}" for i in range(n_genes)]
    order = rng.permutation(n_genes)  # programme genes are not in blocks
    counts, genes = counts[:, order], [genes[i] for i in order]
    names = {genes[j]: j for j in range(n_genes)}
    early = [f"G{i + 1:04d}" for i in range(g)]
    obs = pd.DataFrame({"sim_time": t, "branch": np.where(t < split, "trunk", branch)},
                       index=[f"cell{i}" for i in range(n_cells)])
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.uns["progenitor_markers"] = sorted(early, key=lambda gene: names[gene])
    return adata
