"""Local .h5ad files: validated on resolve, described without loading X, listed."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellprompt.datasets import describe, list_local, resolve
from cellprompt.errors import DatasetError


@pytest.fixture(scope="module")
def rich_h5ad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({
        "cell_type": pd.Categorical(["T", "B", "NK"] * 10),
        "n_counts": rng.random(30),
        "donor": [f"d{i % 2}" for i in range(30)],
    }, index=[f"c{i}" for i in range(30)])
    var = pd.DataFrame({"gene_symbols": [f"G{i}" for i in range(8)]},
                       index=[f"g{i}" for i in range(8)])
    adata = ad.AnnData(X=sp.random(30, 8, density=0.5, format="csr", dtype=np.float32,
                                   random_state=0), obs=obs, var=var)
    adata.layers["counts"] = adata.X.copy()
    adata.obsm["X_umap"] = rng.random((30, 2))
    adata.uns["note"] = "hello"
    path = tmp_path_factory.mktemp("local") / "my data (v2).h5ad"
    adata.write_h5ad(path)
    return path


def test_describe_reads_structure(rich_h5ad: Path) -> None:
    s = describe(rich_h5ad)
    assert (s.n_obs, s.n_vars) == (30, 8)
    assert s.x_format == "csr_matrix" and s.x_dtype == "float32"
    cols = {c.name: c for c in s.obs}
    assert list(cols) == ["cell_type", "n_counts", "donor"]
    assert cols["cell_type"].n_categories == 3 and set(cols["cell_type"].categories) == {
        "T", "B", "NK"}
    assert cols["n_counts"].dtype == "float64" and cols["n_counts"].n_categories is None
    assert [c.name for c in s.var] == ["gene_symbols"]
    assert s.layers == ["counts"] and s.obsm_keys == ["X_umap"] and s.uns_keys == ["note"]
    text = s.as_text("mydata")
    assert "/data/mydata.h5ad: AnnData with 30 cells x 8 genes" in text
    assert "cell_type (categorical, 3 categories" in text and "obsm: X_umap" in text


def test_resolve_local_path(rich_h5ad: Path) -> None:
    rich_h5ad.with_suffix(".json").write_text(json.dumps(
        {"schema_version": 1, "name": "x", "source": "local", "title": "Mine"}))
    resolved = resolve(str(rich_h5ad))
    assert resolved.path == rich_h5ad.resolve() and resolved.source == "local"
    assert resolved.name == "my_data__v2"  # safe as /data/<name>.h5ad
    assert resolved.metadata["title"] == "Mine"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        resolve(str(tmp_path / "absent.h5ad"))


def test_not_hdf5(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"this is not hdf5 at all" * 10)
    with pytest.raises(DatasetError, match=r"not an \.h5ad \(HDF5\) file"):
        resolve(str(bad))


def test_truncated(rich_h5ad: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.h5ad"
    data = rich_h5ad.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated") as info:
        describe(cut)
    assert "\n" not in str(info.value)


def test_hdf5_but_not_anndata(tmp_path: Path) -> None:
    other = tmp_path / "other.h5ad"
    with h5py.File(other, "w") as f:
        f["matrix"] = np.zeros((2, 2))
    with pytest.raises(DatasetError, match="not AnnData"):
        resolve(str(other))


def test_unknown_scheme() -> None:
    with pytest.raises(DatasetError, match="unknown dataset reference 'zenodo:123'"):
        resolve("zenodo:123")


def test_list_local(tmp_path: Path, rich_h5ad: Path) -> None:
    (tmp_path / "builtin").mkdir()
    (tmp_path / "one.h5ad").write_bytes(rich_h5ad.read_bytes())
    (tmp_path / "builtin" / "two.h5ad").write_bytes(rich_h5ad.read_bytes())
    (tmp_path / "builtin" / "two.json").write_text(json.dumps(
        {"schema_version": 1, "name": "two", "source": "builtin", "title": "Two"}))
    found = {d.name: d for d in list_local(tmp_path)}
    assert set(found) == {"one", "two"}
    assert found["one"].source == "local" and found["one"].metadata == {}
    assert found["two"].source == "builtin" and found["two"].metadata["title"] == "Two"
    assert found["one"].size_bytes == rich_h5ad.stat().st_size
