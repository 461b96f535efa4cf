"""Materialising a sealed agent copy of sparse datasets of ~100 MB, ~500 MB and ~2 GB.

A generator (below) writes Census-shaped count matrices block by block: float32
counts in CSR, 20,000 genes, ~1,000 stored values per cell, a categorical `cell_type`
(the withheld truth), `donor`, `n_counts`. Each size is then materialised in a fresh
Python process, so its peak RSS is its own; the script prints time, peak RSS and
time per GB for each, and checks the targets of issue 20:

* time grows no faster than linearly with size (time per GB of the 2 GB file within
  1.5x of the 100 MB file's; interpreter and import start-up are not counted);
* peak RSS for the 2 GB file <= 1 GB plus the withheld columns.

    .venv/bin/python benchmarks/materialise_scale.py [--sizes 100,500,2000] [--dir DIR]
        [--mode materialise|stream]

`--mode materialise` (default) runs `cellprompt.tasks.materialise` on a task that
withholds `cell_type` (shuffled rows, salted ids; the full seal incl. subsample and
noise); `--mode stream` times only the streaming primitive `copy_rows`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

N_GENES = 20_000
PER_CELL = 1_000  # mean stored values per cell
BYTES_PER_VALUE = 8  # float32 value + int32 column index
BLOCK_CELLS = 10_000


def generate(path: Path, size_mb: int, seed: int = 0) -> Path:
    """A sparse count dataset of about `size_mb` MB, written block by block (bounded memory)."""
    from anndata.io import sparse_dataset, write_elem

    if path.exists():
        return path
    n_cells = max(BLOCK_CELLS, int(size_mb * 1e6 / (PER_CELL * BYTES_PER_VALUE)))
    rng = np.random.default_rng(seed)
    types = np.array(["T cell", "B cell", "NK cell", "monocyte", "dendritic cell"])
    labels = rng.integers(0, len(types), n_cells)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        written = False
        n_counts = np.empty(n_cells, dtype=np.float32)
        import scipy.sparse as sp

        for start in range(0, n_cells, BLOCK_CELLS):
            stop = min(n_cells, start + BLOCK_CELLS)
            k = stop - start
            per = rng.integers(PER_CELL // 2, PER_CELL * 3 // 2, k)
            indptr = np.concatenate([[0], np.cumsum(per)]).astype(np.int64)
            nnz = int(indptr[-1])
            # a third of each cell's genes come from its type's own band: structure to find
            band = N_GENES // len(types)
            genes = rng.integers(0, N_GENES, nnz, dtype=np.int32)
            own = rng.random(nnz) < 1 / 3
            genes[own] = (np.repeat(labels[start:stop] * band, per)[own]
                          + rng.integers(0, band, int(own.sum()), dtype=np.int32))
            block = sp.csr_matrix((rng.geometric(0.4, nnz).astype(np.float32), genes, indptr),
                                  shape=(k, N_GENES))
            block.sum_duplicates()
            n_counts[start:stop] = np.asarray(block.sum(axis=1)).ravel()
            if written:
                sparse_dataset(f["X"]).append(block)
            else:
                write_elem(f, "X", block, dataset_kwargs={"chunks": (1 << 18,)})
                written = True
        obs = pd.DataFrame({
            "cell_type": pd.Categorical(types[labels]),
            "donor": pd.Categorical([f"donor{i % 8}" for i in range(n_cells)]),
            "n_counts": n_counts,
        }, index=pd.Index([f"AAACCTG-{i}" for i in range(n_cells)]))
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame(
            {"feature_name": [f"GENE{i}" for i in range(N_GENES)]},
            index=pd.Index([f"ENSG{i:011d}" for i in range(N_GENES)])))
        for key in ("layers", "obsm", "obsp", "varm", "uns"):
            write_elem(f, key, {})
    tmp.replace(path)
    return path


_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, source, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import numpy as np, h5py  # imports are start-up, not materialisation: timed apart
from cellprompt.datasets.stream import copy_rows
from cellprompt.tasks import materialise
from cellprompt.tasks.spec import Task
started = time.perf_counter()
if mode == "stream":
    with h5py.File(source) as f:
        n = int(f["X"].attrs["shape"][0])
    rows = np.random.default_rng(0).permutation(n)
    held = copy_rows(source, out / "copy.h5ad", rows, drop={"obs": ["cell_type"]})
    withheld = int(held.parts["obs"]["cell_type"].codes.nbytes)
else:
    task = Task(id="scale", title="scale", dataset=str(source), objective="label cells",
                withhold={"obs": ["cell_type"]}, seal={"subsample": 0.9, "perturb": 0.01},
                graders=[{"type": "label_agreement", "config": {"field": "labels",
                                                                "truth": "obs.cell_type"}}])
    mat = materialise(task, datasets_dir=out)
    withheld = len(json.dumps(mat.truth))
elapsed = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": elapsed, "peak_rss": rss, "withheld_bytes": withheld}))
"""


def measure(mode: str, source: Path, workdir: Path) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(dir=workdir, prefix="out-"))
    done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(source), str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"materialising {source.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500,2000", help="dataset sizes in MB")
    parser.add_argument("--dir", type=Path, default=None, help="where to keep the datasets")
    parser.add_argument("--mode", choices=("materialise", "stream"), default="materialise")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="materialise-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        path = generate(workdir / f"sparse-{size}mb.h5ad", size)
        made = time.perf_counter() - t0
        gb = path.stat().st_size / 1e9
        m = measure(args.mode, path, workdir)
        rows.append((size, gb, m))
        print(f"{size:>5} MB target  file {gb * 1000:7.0f} MB  (made or found in {made:5.1f} s)  "
              f"{args.mode}: {m['seconds']:6.1f} s  {m['seconds'] / gb:5.1f} s/GB  "
              f"peak RSS {m['peak_rss'] / 2**20:6.0f} MiB  withheld {m['withheld_bytes'] / 1e6:.1f} MB",
              flush=True)
    (small_size, small_gb, small), (big_size, big_gb, big) = rows[0], rows[-1]
    ratio = (big["seconds"] / big_gb) / (small["seconds"] / small_gb)
    budget = 2**30 + big["withheld_bytes"]
    print(f"time per GB, {big_size} MB vs {small_size} MB: {ratio:.2f}x "
          f"(target <= 1.5, i.e. no worse than linear: {'ok' if ratio <= 1.5 else 'MISSED'})")
    print(f"peak RSS at {big_size} MB: {big['peak_rss'] / 2**20:.0f} MiB, budget "
          f"{budget / 2**20:.0f} MiB (1 GiB + withheld): "
          f"{'ok' if big['peak_rss'] <= budget else 'MISSED'}")


if __name__ == "__main__":
    main()
