"""The streamed sealed copy is the in-memory `seal()` + `withhold()`, written without loading X."""

from __future__ import annotations

import secrets
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellprompt.tasks.materialise import withhold
from cellprompt.tasks.seal import SealPlan, seal
from cellprompt.tasks.sealed_copy import (
    load_for_truth,
    missing,
    select_rows,
    truth_json,
    write_sealed_copy,
)
from cellprompt.tasks.spec import Task, Withhold

N, G = 400, 30


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ad.AnnData]:
    rng = np.random.default_rng(0)
    counts = sp.random(N, G, density=0.3, format="csr", random_state=1,
                       data_rvs=lambda k: rng.integers(1, 30, k)).astype(np.float32)
    lognorm = counts.copy()
    lognorm.data = np.log1p(lognorm.data)
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B", "NK"], N)),
                        "n_counts": np.asarray(counts.sum(axis=1)).ravel(),
                        "score": rng.normal(size=N), "phase": rng.choice(["G1", "S"], N)},
                       index=[f"AAAC-{i}" for i in range(N)])
    var = pd.DataFrame({"highly_variable": rng.random(G) < 0.3},
                       index=[f"g{i}" for i in range(G)])
    adata = ad.AnnData(X=lognorm, obs=obs, var=var)
    adata.layers["counts"] = counts
    adata.obsm["X_pca"] = rng.normal(size=(N, 4))
    adata.uns["cell_type_colors"] = np.array(["#1", "#2", "#3"], dtype=object)
    path = tmp_path_factory.mktemp("sealed") / "source.h5ad"
    adata.write_h5ad(path)
    return path, adata


def _task(w: Withhold) -> Task:
    return Task(id="t", title="t", dataset="x.h5ad", objective="o", withhold=w,
                graders=[{"type": "exact_match", "config": {"field": "x"}}])


WITHHOLD = Withhold(obs=["cell_type", "score"], var=["highly_variable"], obsm=["X_pca"])


@pytest.mark.parametrize("plan", [SealPlan(True, True, 1.0, 0.0), SealPlan(True, True, 0.9, 0.0),
                                  SealPlan(False, False, 0.5, 0.0)])
def test_same_as_in_memory_sealing(source: tuple[Path, ad.AnnData], tmp_path: Path,
                                   plan: SealPlan) -> None:
    path, adata = source
    salt = secrets.token_bytes(16)
    dest = tmp_path / "agent.h5ad"
    withheld, rows = write_sealed_copy(path, dest, plan, salt, WITHHOLD)
    sealed, origin = seal(adata.copy(), plan, salt)
    np.testing.assert_array_equal(rows, origin)
    expected_truth = withhold(sealed, _task(WITHHOLD), "x")
    assert truth_json(withheld, WITHHOLD) == expected_truth
    got = ad.read_h5ad(dest)
    assert list(got.obs_names) == list(sealed.obs_names)
    assert list(got.obs.columns) == list(sealed.obs.columns) == ["n_counts", "phase"]
    assert (got.X != sealed.X).nnz == 0 and (got.layers["counts"] != sealed.layers["counts"]).nnz == 0
    assert "cell_type_colors" not in got.uns and "X_pca" not in got.obsm
    assert list(got.var.columns) == []


def test_noise_is_sealing_noise(source: tuple[Path, ad.AnnData], tmp_path: Path) -> None:
    path, adata = source
    plan = SealPlan(True, True, 0.9, 0.01)
    withheld, rows = write_sealed_copy(path, tmp_path / "agent.h5ad", plan, b"s" * 16, WITHHOLD)
    got = ad.read_h5ad(tmp_path / "agent.h5ad")
    before = adata.X[rows]
    assert (got.X != 0).nnz == before.nnz  # zeros stay zero
    ratio = got.X.data / before.data
    assert 0 < np.abs(ratio - 1).max() < 0.1 and np.std(ratio) == pytest.approx(0.01, rel=0.3)
    assert (got.layers["counts"] != adata.layers["counts"][rows]).nnz == 0  # counts untouched
    n_counts = got.obs["n_counts"].to_numpy()
    assert np.all(n_counts == np.round(n_counts))  # counts stay integers
    assert not np.array_equal(n_counts, adata.obs["n_counts"].to_numpy()[rows])
    truth = truth_json(withheld, WITHHOLD)
    score = np.array([truth["obs"]["score"][name] for name in got.obs_names])
    original = adata.obs["score"].to_numpy()[rows]
    assert 0 < np.abs(score / original - 1).max() < 0.1  # withheld floats got the same noise
    assert len(truth["obsm"]["X_pca"]) == len(rows)


def test_truth_recipes_get_the_data_back(source: tuple[Path, ad.AnnData], tmp_path: Path) -> None:
    path, adata = source
    plan = SealPlan(True, True, 1.0, 0.0)
    withheld, rows = write_sealed_copy(path, tmp_path / "agent.h5ad", plan, b"k" * 16, WITHHOLD)
    full = load_for_truth(tmp_path / "agent.h5ad", withheld)
    assert list(full.obs["cell_type"]) == list(adata.obs["cell_type"].iloc[rows])
    np.testing.assert_array_equal(full.obsm["X_pca"], adata.obsm["X_pca"][rows])


def test_missing_names(source: tuple[Path, ad.AnnData]) -> None:
    found = missing(source[0], Withhold(obs=["cell_type", "nope"], obsm=["X_umap"]))
    assert found["obs"][0] == ["nope"] and found["obsm"] == (["X_umap"], ["X_pca"])


def test_select_rows_is_seal_rows() -> None:
    plan = SealPlan(True, True, 0.9, 0.0)
    adata = ad.AnnData(X=np.zeros((120, 2), dtype=np.float32))
    _, origin = seal(adata, plan, b"x" * 16)
    np.testing.assert_array_equal(select_rows(120, plan, b"x" * 16), origin)
