"""Dataset staging: time until an .h5ad is visible inside a fresh sandbox, 10 MB vs 2 GB.

Sandboxes mount datasets (bind mounts) and never copy them, so staging time must
not grow with file size: the script prints both medians and their ratio (target
<= 1.5), plus `describe()` and `resolve()` times on the 2 GB file (target < 1 s).

    .venv/bin/python benchmarks/dataset_staging.py [--backend bwrap] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata.io import write_elem

from cellprompt.datasets import describe, resolve

N_VARS = 2000
BLOCK_ROWS = 8192


def write_h5ad(path: Path, size_bytes: int) -> Path:
    """A real AnnData file of about `size_bytes`: dense float32 X written block by block."""
    if path.exists() and abs(path.stat().st_size - size_bytes) < size_bytes // 10:
        return path
    n_obs = max(1, size_bytes // (N_VARS * 4))
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        write_elem(f, "obs", pd.DataFrame(
            {"cell_type": pd.Categorical(np.array(["T", "B", "NK"])[np.arange(n_obs) % 3])},
            index=pd.Index([f"c{i}" for i in range(n_obs)])))
        write_elem(f, "var", pd.DataFrame(index=pd.Index([f"g{i}" for i in range(N_VARS)])))
        x = f.create_dataset("X", shape=(n_obs, N_VARS), dtype="float32")
        x.attrs["encoding-type"] = "array"
        x.attrs["encoding-version"] = "0.2.0"
        rng = np.random.default_rng(0)
        block = rng.random((BLOCK_ROWS, N_VARS), dtype=np.float32)
        for start in range(0, n_obs, BLOCK_ROWS):
            stop = min(n_obs, start + BLOCK_ROWS)
            x[start:stop] = block[: stop - start]
        for key in ("uns", "obsm", "varm", "obsp", "varp", "layers"):
            write_elem(f, key, {})
    tmp.replace(path)
    return path


def staging_seconds(path: Path, backend: str) -> float:
    """From `open_sandbox` to the agent's code seeing the whole file at /data/<name>."""
    from cellprompt.sandbox import open_sandbox

    resolved = resolve(str(path))
    started = time.perf_counter()
    with open_sandbox(backend=backend, datasets=[resolved.path]) as sb:
        result = sb.execute(
            f"import os; print(os.path.getsize('/data/{resolved.path.name}'))", timeout=120)
        elapsed = time.perf_counter() - started
    printed = "".join(o.get("text", "") for o in result.outputs if o.get("type") == "stream")
    if result.final_status != "ok" or printed.strip() != str(path.stat().st_size):
        raise SystemExit(f"dataset not visible in the sandbox: {result.final_status} {printed!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to keep the test files (default: a temp folder, removed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cellprompt-staging-") as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        small = write_h5ad(folder / "small_10mb.h5ad", 10 * 1024**2)
        large = write_h5ad(folder / "large_2gb.h5ad", 2 * 1024**3)
        print(f"files ready in {time.perf_counter() - t:.1f} s: "
              f"{small.stat().st_size / 1e6:.0f} MB, {large.stat().st_size / 1e9:.2f} GB")

        t = time.perf_counter()
        summary = describe(large)
        describe_s = time.perf_counter() - t
        t = time.perf_counter()
        resolve(str(large))
        resolve_s = time.perf_counter() - t
        print(f"describe(2 GB): {describe_s * 1000:.1f} ms ({summary.n_obs} x {summary.n_vars})"
              f"  resolve(2 GB): {resolve_s * 1000:.1f} ms  (target < 1000 ms)")

        staging_seconds(small, args.backend)  # warm caches (imports, page cache of binaries)
        times: dict[str, list[float]] = {"10 MB": [], "2 GB": []}
        for _ in range(args.repeats):  # interleaved so drift hits both sizes alike
            times["10 MB"].append(staging_seconds(small, args.backend))
            times["2 GB"].append(staging_seconds(large, args.backend))
        small_s, large_s = (statistics.median(v) for v in times.values())
        print(f"staging ({args.backend}, median of {args.repeats}): 10 MB {small_s:.3f} s, "
              f"2 GB {large_s:.3f} s")
        ratio = large_s / small_s
        print(f"ratio 2 GB / 10 MB = {ratio:.2f} (target <= 1.5): "
              f"{'OK' if ratio <= 1.5 else 'TOO SLOW'}")


if __name__ == "__main__":
    main()
