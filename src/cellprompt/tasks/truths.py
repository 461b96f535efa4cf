"""Truth recipes: the withheld answer recomputed on the sealed copy, on the host.

A sealed copy is a subsample of a perturbed public dataset, so a truth written into a
task file (369 myeloid cells, 177 DE genes) would no longer describe the cells the agent
has. A task names a recipe instead; the recipe runs once per copy on the full sealed
AnnData (before anything is withheld) and its output is stored beside the copy, never
mounted into a sandbox. Recipes are trusted package code (a task file only names one),
so materialising a downloaded task never runs code from it on the host.

Each recipe states how the truth is defined (the method the objective names, or a
quantity every valid method agrees on) and what it provides: `obs` columns (per cell,
keyed by the sealed ids) and `computed` entries.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cellprompt.errors import TaskError

Parts = dict[str, dict[str, Any]]  # {"obs": {col: {cell: value}}, "computed": {key: value}}


@dataclass(frozen=True)
class Recipe:
    fn: Callable[[Any, np.ndarray, dict[str, Any]], Parts]
    provides: Callable[[dict[str, Any]], dict[str, list[str]]]


_RECIPES: dict[str, Recipe] = {}


def recipe(name: str, provides: Callable[[dict[str, Any]], dict[str, list[str]]]
           ) -> Callable[[Callable[[Any, np.ndarray, dict[str, Any]], Parts]], Any]:
    def wrap(fn: Callable[[Any, np.ndarray, dict[str, Any]], Parts]) -> Any:
        _RECIPES[name] = Recipe(fn, provides)
        return fn
    return wrap


def get_recipe(name: str) -> Recipe:
    if name not in _RECIPES:
        raise TaskError(f"unknown truth recipe {name!r}: use one of {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def fingerprint(name: str) -> str:
    """A hash of the recipe's code: editing a recipe invalidates the copies made with it."""
    import hashlib
    import inspect

    return hashlib.sha256(inspect.getsource(get_recipe(name).fn).encode()).hexdigest()[:12]


def provides(name: str, params: dict[str, Any]) -> dict[str, list[str]]:
    return get_recipe(name).provides(params)


def compute(name: str, adata: Any, origin: np.ndarray, params: dict[str, Any]) -> Parts:
    """Run recipe `name` on the sealed AnnData; `origin[i]` is row i's source position."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_recipe(name).fn(adata, origin, params)


def _cells(adata: Any) -> list[str]:
    return [str(c) for c in adata.obs_names]


def _lognorm(adata: Any) -> Any:
    """The log-normalised matrix: `.raw` when X has been scaled (pbmc68k_reduced), else X."""
    return adata.raw.to_adata() if adata.raw is not None else adata.copy()


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


# -- qc --------------------------------------------------------------------------------

@recipe("qc_mito", lambda p: {"computed": ["qc"]})
def _qc_mito(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Cells above the mitochondrial fraction threshold and the median total counts."""
    frac = adata.obs[p.get("fraction_column", "percent_mito")].to_numpy(dtype=float)
    counts = adata.obs[p.get("counts_column", "n_counts")].to_numpy(dtype=float)
    return {"computed": {"qc": {"n_cells_high_mito": int((frac > p.get("threshold", 0.02)).sum()),
                                "median_total_counts": float(np.median(counts))}}}


# -- pca -------------------------------------------------------------------------------

@recipe("pca_variance", lambda p: {"computed": ["pca"]})
def _pca_variance(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Exact PCA of X on every gene (centred SVD): the fraction of total variance per PC."""
    x = _dense(adata.X)
    x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    ratio = s**2 / (s**2).sum()
    return {"computed": {"pca": {"pc1_variance_ratio": float(ratio[0]),
                                 "top10_cumulative_variance_ratio": float(ratio[:10].sum())}}}


# -- clustering ------------------------------------------------------------------------

@recipe("leiden", lambda p: {"obs": [p.get("column", "leiden")], "computed": ["clusters"]})
def _leiden(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Leiden on the kNN graph of the PCA of X, with the parameters the objective states."""
    import scanpy as sc

    a = adata.copy()
    sc.pp.pca(a, n_comps=p.get("n_comps", 50), mask_var=None, random_state=0)
    sc.pp.neighbors(a, n_neighbors=p.get("n_neighbors", 10), random_state=0)
    sc.tl.leiden(a, resolution=p.get("resolution", 1.0), random_state=0, flavor="igraph",
                 n_iterations=2, directed=False)
    labels = a.obs["leiden"].astype(str)
    return {"obs": {p.get("column", "leiden"): dict(zip(_cells(a), labels, strict=True))},
            "computed": {"clusters": {"n_clusters": int(labels.nunique())}}}


# -- hvg -------------------------------------------------------------------------------

@recipe("hvg_seurat", lambda p: {"computed": ["hvg"]})
def _hvg_seurat(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """The top genes by scanpy's seurat-flavour normalised dispersion on log-normalised data."""
    import scanpy as sc

    lognorm = _lognorm(adata)
    n = p.get("n_top", 50)
    sc.pp.highly_variable_genes(lognorm, flavor="seurat", n_top_genes=n)
    top = lognorm.var.sort_values("dispersions_norm", ascending=False).index[:n]
    return {"computed": {"hvg": [str(g) for g in top]}}


# -- differential expression -----------------------------------------------------------

def _groups(adata: Any, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    labels = adata.obs[p["groupby"]].astype(str).to_numpy()
    group = labels == p["group"]
    ref = labels == p["reference"] if p.get("reference", "rest") != "rest" else ~group
    return group, ref


@recipe("de_two_groups", lambda p: {"computed": ["de", "de_genes"]})
def _de_two_groups(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Tie-corrected Wilcoxon rank-sum (as scipy's mannwhitneyu), BH-adjusted, group vs reference.

    The fold change of `gene` is log2 of the ratio of mean linear expression (expm1 of the
    log-normalised values) with no pseudocount: the definition the objective states.
    """
    from scipy.stats import mannwhitneyu
    from statsmodels.stats.multitest import multipletests

    lognorm = _lognorm(adata)
    group, ref = _groups(adata, p)
    x = _dense(lognorm.X)
    pvals = mannwhitneyu(x[group], x[ref], alternative="two-sided", method="asymptotic",
                         use_continuity=False, axis=0).pvalue
    pvals = np.where(np.isnan(pvals), 1.0, pvals)
    adj = multipletests(pvals, method="fdr_bh")[1]
    sig = [str(g) for g, q in zip(lognorm.var_names, adj, strict=True) if q < p.get("alpha", 0.05)]
    gene = p["gene"]
    col = list(lognorm.var_names).index(gene)
    lin = np.expm1(x[:, col])
    fc = float(np.log2(lin[group].mean() / lin[ref].mean()))
    return {"computed": {"de": {"n_significant": len(sig), p["fc_field"]: fc}, "de_genes": sig}}


@recipe("markers_consensus", lambda p: {"computed": ["markers", "markers_up"]})
def _markers_consensus(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Markers of a group versus the rest that several valid methods agree on, all up-regulated.

    Each of Wilcoxon, t-test (Welch) and logistic regression ranks the genes; a gene is a
    marker when it is in the top `top_n` of at least `min_methods` of them and is up in the
    group (higher mean log-normalised expression). `markers_up` is every gene with a
    positive fold change: a marker list must not contain a down-regulated gene.
    """
    import scanpy as sc

    lognorm = _lognorm(adata)
    group, rest = _groups(adata, p)
    lognorm.obs = pd.DataFrame({"_g": pd.Categorical(np.where(group, "g", "rest"))},
                               index=lognorm.obs_names)
    x = _dense(lognorm.X)
    up = x[group].mean(axis=0) > x[rest].mean(axis=0)
    top_n = p.get("top_n", 25)
    votes: dict[str, int] = {}
    rankings: dict[str, list[str]] = {}
    for method in ("wilcoxon", "t-test", "logreg"):
        if method == "logreg":  # one multinomial fit over every label (binary fits flip sign)
            lognorm.obs["_all"] = adata.obs[p["groupby"]].astype(str).astype("category").values
            sc.tl.rank_genes_groups(lognorm, "_all", method="logreg", key_added=method,
                                    max_iter=1000)
            names = [str(n) for n in lognorm.uns[method]["names"][p["group"]]]
        else:
            sc.tl.rank_genes_groups(lognorm, "_g", groups=["g"], reference="rest",
                                    method=method, key_added=method)
            names = [str(n) for n in lognorm.uns[method]["names"]["g"]]
        rankings[method] = names
        for g in names[:top_n]:
            votes[g] = votes.get(g, 0) + 1
    idx = {g: i for i, g in enumerate(lognorm.var_names)}
    pool = [str(g) for g in lognorm.var_names if up[idx[str(g)]]]
    consensus = [g for g in dict.fromkeys([*rankings["wilcoxon"], *rankings["t-test"],
                                           *rankings["logreg"]])
                 if votes.get(g, 0) >= p.get("min_methods", 2) and up[idx[g]]]
    return {"computed": {"markers": consensus, "markers_up": pool}}


# -- labels ----------------------------------------------------------------------------

@recipe("label_counts", lambda p: {"computed": [p.get("key", "counts")]})
def _label_counts(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Cells per (mapped) label, under the answer field names the task asks for."""
    labels = adata.obs[p["column"]].astype(str).map(lambda v: p.get("map", {}).get(v, v))
    counts = {field: int((labels == label).sum()) for field, label in p["fields"].items()}
    return {"computed": {p.get("key", "counts"): counts}}


# -- trajectories ----------------------------------------------------------------------

@recipe("simulation_time", lambda p: {"obs": ["sim_time", "branch"]})
def _simulation_time(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """krumsiek11 holds `n_runs` simulations of `n_steps` steps stored in order: the time of
    a cell is its step, its branch the run it came from (both from its source position)."""
    steps = p.get("n_steps", 160)
    cells = _cells(adata)
    return {"obs": {"sim_time": {c: int(o % steps) for c, o in zip(cells, origin, strict=True)},
                    "branch": {c: int(o // steps) for c, o in zip(cells, origin, strict=True)}}}


# -- visible columns a grader needs ----------------------------------------------------

@recipe("obs_columns", lambda p: {"obs": list(p["columns"])})
def _obs_columns(adata: Any, origin: np.ndarray, p: dict[str, Any]) -> Parts:
    """Columns the agent also sees (a cell's batch), copied into the truth for a grader that
    needs them beside the withheld ones (keyed by the sealed ids, values as strings)."""
    cells = _cells(adata)
    return {"obs": {c: dict(zip(cells, adata.obs[c].astype(str), strict=True))
                    for c in p["columns"]}}
