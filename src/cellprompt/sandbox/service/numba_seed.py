"""A warm numba cache, so agent code does not compile umap/pynndescent anew in every sandbox.

`sc.pp.neighbors`, `sc.tl.umap` and friends spend 10–15 s JIT-compiling on first
use; every trial runs in a fresh sandbox, so every trial would pay it. The cache
is built once by trusted code (`cellprompt sandbox build`, or the image build)
into a seed folder that sandboxes see read-only; the service copies it into the
sandbox's private /tmp at start (numba only uses a cache folder it can write),
so nothing an agent writes there can reach another trial.

Run as `python -m service.numba_seed DIR` to build the seed into DIR.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SEED_ENV = "NUMBA_CACHE_SEED"  # read by the service only; not passed to the kernel
SEED_INSIDE = "/opt/cellprompt/numba-seed"

# Synthetic counts, not a bundled dataset: the runtime holds no dataset (they can hold a
# task's truth), and numba compiles per argument type, not per data. The calls are what
# analysts run (and the built-in tasks' solutions use), with their common options; a host
# kernel finds every one of them in site-packages' own numba cache once run there, so each
# call missing here makes the sandbox that much slower than the host (regress_out 4 s,
# downsample_counts 3 s, Pearson-residual HVGs 2 s, scrublet 1 s). pynndescent's k-NN graph
# for 4096 cells or more compiles in every process, host or sandbox: numba cannot cache it.
WARMUP = """
import warnings
warnings.simplefilter("ignore")
import numpy as np, scipy.sparse as sp, anndata as ad, scanpy as sc
rng = np.random.default_rng(0)
counts = rng.negative_binomial(2, 0.3, size=(400, 300)).astype(np.float32)
adata = ad.AnnData(sp.csr_matrix(counts))
adata.var_names = [f"g{i}" for i in range(adata.n_vars)]
adata.var["mt"] = adata.var_names.str.startswith("g1")
sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=(20, 50), inplace=True)
sc.pp.filter_cells(adata, min_genes=1)
sc.pp.filter_genes(adata, min_cells=1)
adata.layers["counts"] = adata.X.copy()
raw = adata.copy()
for x in (raw.X, raw.X.toarray()):  # sparse and dense counts take different compiled paths
    sc.pp.downsample_counts(ad.AnnData(x.copy()), counts_per_cell=50, random_state=0)
sc.pp.scrublet(raw.copy(), threshold=0.25)
sc.experimental.pp.highly_variable_genes(raw.copy(), n_top_genes=50)
sc.experimental.pp.normalize_pearson_residuals(raw.copy())
sc.pp.normalize_total(adata, target_sum=1e4)
sc.pp.log1p(adata)
sc.pp.regress_out(adata.copy(), ["total_counts", "pct_counts_mt"])
sc.pp.highly_variable_genes(adata, n_top_genes=100)
sc.pp.highly_variable_genes(adata, flavor="cell_ranger", n_top_genes=100)
dense = adata.copy()
sc.pp.scale(dense, max_value=10)
sc.pp.pca(adata, n_comps=20)
sc.pp.neighbors(adata)
sc.tl.umap(adata)
sc.tl.leiden(adata, flavor="igraph", n_iterations=2)
adata.obs["group"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
for method in ("wilcoxon", "t-test", "t-test_overestim_var"):
    sc.tl.rank_genes_groups(adata, "group", method=method)
    sc.tl.rank_genes_groups(adata, "group", method=method, tie_correct=method == "wilcoxon",
                            groups=["a"], reference="b")
sc.tl.score_genes(adata, list(adata.var_names[:20]))
sc.tl.diffmap(adata)
adata.uns["iroot"] = 0
sc.tl.dpt(adata)
sc.tl.paga(adata, groups="leiden")
"""


def seed_cache() -> None:
    """Copy the read-only seed into the kernel's writable NUMBA_CACHE_DIR, if both are set."""
    seed, target = os.environ.get(SEED_ENV), os.environ.get("NUMBA_CACHE_DIR")
    if seed and target and Path(seed).is_dir() and not Path(target).exists():
        shutil.copytree(seed, target)


def build(folder: Path) -> None:
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    os.environ.setdefault("MPLCONFIGDIR", str(folder.parent / "mpl"))
    exec(compile(WARMUP, "<numba warm-up>", "exec"), {})


if __name__ == "__main__":
    build(Path(sys.argv[1]))
