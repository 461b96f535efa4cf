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

WARMUP = """
import warnings
warnings.simplefilter("ignore")
import scanpy as sc
adata = sc.datasets.pbmc68k_reduced()
sc.pp.neighbors(adata)
sc.tl.umap(adata)
sc.tl.leiden(adata, flavor="igraph", n_iterations=2)
sc.tl.diffmap(adata)
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
