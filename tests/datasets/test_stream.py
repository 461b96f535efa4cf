"""`copy_rows`: the streamed copy equals anndata's in-memory `adata[rows]`, in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellprompt.datasets.stream import copy_rows, keys

N, G = 300, 40


def _dense(m: object) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def _rich(x_format: str) -> ad.AnnData:
    rng = np.random.default_rng(0)
    counts = sp.random(N, G, density=0.2, format="csr", random_state=1,
                       data_rvs=lambda k: rng.integers(1, 50, k)).astype(np.float32)
    x = counts.copy()
    x.data = np.log1p(x.data)
    x = {"csr": x, "csc": x.tocsc(), "dense": x.toarray()}[x_format]
    obs = pd.DataFrame({
        "cell_type": pd.Categorical(rng.choice(["T", "B", "NK"], N)),
        "donor": rng.choice(["d1", "d2"], N).astype(object),
        "n_counts": np.asarray(counts.sum(axis=1)).ravel(),
        "score": rng.normal(size=N),
        "is_doublet": rng.random(N) < 0.1,
        "batch_size": pd.array(rng.integers(0, 5, N), dtype="Int64"),
    }, index=[f"cell{i}" for i in range(N)])
    var = pd.DataFrame({"symbol": [f"G{i}" for i in range(G)],
                        "highly_variable": rng.random(G) < 0.3},
                       index=[f"ENSG{i:05d}" for i in range(G)])
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.layers["counts"] = counts
    adata.layers["dense"] = counts.toarray()
    adata.obsm["X_pca"] = rng.normal(size=(N, 5))
    adata.obsm["X_umap"] = rng.normal(size=(N, 2)).astype(np.float32)
    adata.obsp["connectivities"] = sp.random(N, N, density=0.02, format="csr", random_state=2)
    adata.varm["PCs"] = rng.normal(size=(G, 5))
    adata.uns["cell_type_colors"] = np.array(["#ff0000", "#00ff00", "#0000ff"], dtype=object)
    adata.uns["note"] = "kept"
    adata.raw = ad.AnnData(X=counts, var=var)
    return adata


@pytest.fixture(params=["csr", "csc", "dense"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, ad.AnnData]:
    adata = _rich(request.param)
    path = tmp_path / f"src-{request.param}.h5ad"
    adata.write_h5ad(path)
    return path, adata


def test_copy_equals_in_memory_subset(source: tuple[Path, ad.AnnData], tmp_path: Path) -> None:
    path, adata = source
    rows = np.random.default_rng(3).permutation(N)[: N - 37]  # shuffled and subsampled
    names = [f"h{i}" for i in range(len(rows))]
    dest = tmp_path / "copy.h5ad"
    withheld = copy_rows(path, dest, rows, obs_names=names, chunk_bytes=2048,
                         drop={"obs": ["cell_type"], "var": ["highly_variable"],
                               "obsm": ["X_umap"], "uns": ["cell_type_colors"],
                               "obsp": ["connectivities"], "varm": ["PCs"]})
    want = adata[rows].copy()
    got = ad.read_h5ad(dest)
    assert list(got.obs_names) == names and list(got.var_names) == list(adata.var_names)
    np.testing.assert_allclose(_dense(got.X), _dense(want.X))
    assert type(got.X) is type(want.X)
    for key in ("counts", "dense"):
        np.testing.assert_array_equal(_dense(got.layers[key]), _dense(want.layers[key]))
    np.testing.assert_array_equal(_dense(got.raw.X), _dense(want.raw.X))
    assert list(got.raw.var_names) == list(adata.var_names)
    np.testing.assert_array_equal(got.obsm["X_pca"], want.obsm["X_pca"])
    assert set(got.obsm) == {"X_pca"} and set(got.obsp) == set() and set(got.varm) == set()
    assert list(got.obs.columns) == ["donor", "n_counts", "score", "is_doublet", "batch_size"]
    for column in got.obs.columns:
        assert list(got.obs[column]) == list(want.obs[column]), column
    assert list(got.var.columns) == ["symbol"]
    assert set(got.uns) == {"note"}
    # what was left out comes back, in the copy's row order
    assert list(withheld.parts["obs"]["cell_type"]) == list(want.obs["cell_type"])
    assert list(withheld.parts["var"]["highly_variable"]) == list(adata.var["highly_variable"])
    np.testing.assert_array_equal(withheld.parts["obsm"]["X_umap"], want.obsm["X_umap"])
    np.testing.assert_array_equal(_dense(withheld.parts["obsp"]["connectivities"]),
                                  _dense(want.obsp["connectivities"]))
    np.testing.assert_array_equal(withheld.parts["varm"]["PCs"], adata.varm["PCs"])
    assert withheld.obs_names == names


def test_transform_sees_every_float_block(source: tuple[Path, ad.AnnData],
                                          tmp_path: Path) -> None:
    path, adata = source
    seen: set[str] = set()

    def double(element: str, values: np.ndarray) -> np.ndarray:
        seen.add(element)
        return values * 2 if values.dtype.kind == "f" else values

    rows = np.arange(N)[::-1]
    copy_rows(path, tmp_path / "x2.h5ad", rows, transform=double, chunk_bytes=4096)
    got = ad.read_h5ad(tmp_path / "x2.h5ad")
    np.testing.assert_allclose(_dense(got.X), 2 * _dense(adata.X)[rows], rtol=1e-6)
    np.testing.assert_allclose(got.obs["score"], 2 * adata.obs["score"].to_numpy()[rows])
    assert list(got.obs["cell_type"]) == list(adata.obs["cell_type"].iloc[rows])
    assert {"X", "layers/counts", "layers/dense", "raw/X", "obsm/X_pca", "obs/score",
            "obs/n_counts"} <= seen


def test_keys(source: tuple[Path, ad.AnnData]) -> None:
    found = keys(source[0])
    assert found["obs"][:2] == ["cell_type", "donor"] and found["layers"] == ["counts", "dense"]
    assert found["obsm"] == ["X_pca", "X_umap"] and "note" in found["uns"]


def test_memory_stays_within_the_chunk_budget(tmp_path: Path) -> None:
    """A 48 MB matrix copied in 1 MB blocks never holds much more than a few blocks."""
    n, g, per_row = 20_000, 2_000, 300
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random(n * per_row, dtype=np.float32),
                       np.sort(rng.integers(0, g, (n, per_row)), axis=1).ravel(),
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, g))
    path = tmp_path / "big.h5ad"
    ad.AnnData(X=x).write_h5ad(path)
    with h5py.File(path) as f:
        stored = f["X/data"].nbytes + f["X/indices"].nbytes
    assert stored > 40 << 20
    rows = np.random.default_rng(0).permutation(n)
    tracemalloc.start()
    try:
        copy_rows(path, tmp_path / "copy.h5ad", rows, chunk_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, f"peak {peak / 1e6:.1f} MB for a {stored / 1e6:.0f} MB matrix"
    got = ad.read_h5ad(tmp_path / "copy.h5ad")
    assert (x[rows] != got.X).nnz == 0
