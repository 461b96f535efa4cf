"""Multi-GB `.h5ad` files: described in seconds without reading X; refused when they cannot fit."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellprompt.datasets import describe
from cellprompt.datasets.footprint import GIB, check_fits, footprint, parse_size
from cellprompt.errors import DatasetError

N_CELLS, N_GENES, NNZ = 200_000, 30_000, 1_500_000_000  # X alone: 12 GB in memory


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An `.h5ad` whose X holds 1.5 billion values as far as HDF5 says, in a file of a few MB.

    Its X chunks are never written (HDF5 allocates them lazily), so anything that read
    X would spend minutes and 12 GB on fill values: the time bound below catches that.
    """
    path = tmp_path_factory.mktemp("huge") / "atlas.h5ad"
    obs = pd.DataFrame({"cell_type": pd.Categorical(["T", "B", "NK", "Mono"] * (N_CELLS // 4)),
                        "n_counts": np.ones(N_CELLS, dtype=np.float32)},
                       index=[f"c{i}" for i in range(N_CELLS)])
    var = pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)])
    ad.AnnData(X=sp.csr_matrix((N_CELLS, N_GENES), dtype=np.float32), obs=obs,
               var=var).write_h5ad(path)
    with h5py.File(path, "r+") as f:
        x = f["X"]
        for key, dtype in (("data", np.float32), ("indices", np.int32)):
            del x[key]
            x.create_dataset(key, shape=(NNZ,), dtype=dtype, chunks=(1 << 20,))
    assert path.stat().st_size < 64 << 20
    return path


def test_describe_never_reads_x(huge: Path) -> None:
    started = time.monotonic()
    s = describe(huge)
    assert time.monotonic() - started < 3
    assert (s.n_obs, s.n_vars, s.x_format, s.x_nnz) == (N_CELLS, N_GENES, "csr_matrix", NNZ)
    assert s.memory_bytes is not None and s.memory_bytes > NNZ * 8


def test_footprint_of_a_real_file_matches_what_anndata_loads(tmp_path: Path) -> None:
    x = sp.random(500, 300, density=0.1, format="csr", dtype=np.float32, random_state=0)
    adata = ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(500)]),
                       var=pd.DataFrame(index=[f"g{i}" for i in range(300)]))
    adata.layers["counts"] = x.copy()
    adata.obsm["X_pca"] = np.zeros((500, 50))
    path = tmp_path / "small.h5ad"
    adata.write_h5ad(path)
    parts = footprint(path).parts
    loaded = ad.read_h5ad(path)
    x_bytes = loaded.X.data.nbytes + loaded.X.indices.nbytes + loaded.X.indptr.nbytes
    assert parts["X"] == pytest.approx(x_bytes, rel=0.05)
    assert parts["layers"] == pytest.approx(x_bytes, rel=0.05)
    assert parts["obsm"] == 500 * 50 * 8


def test_too_big_for_the_sandbox_is_refused(huge: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        check_fits(huge, "4g", name="atlas.h5ad")
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert message.startswith("dataset atlas.h5ad needs at least 11.")
    assert "sandbox memory limit is 4.0 GB" in message and "X 11." in message
    assert "CELLPROMPT_SANDBOX_MEMORY=15g" in message and "--memory 15g" in message
    assert "\n" not in message
    fits = check_fits(huge, "15g")
    assert fits is not None and fits.needed_bytes < parse_size("15g")


def test_task_declared_memory_is_held_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "tiny.h5ad"
    ad.AnnData(X=np.zeros((3, 2), dtype=np.float32)).write_h5ad(path)
    assert check_fits(path, "4g", declared="2g") is not None
    with pytest.raises(DatasetError, match=r"the task needs 16\.0 GB of memory \(its "
                                           r"limits\.memory\) but the sandbox memory limit is "
                                           r"4\.0 GB: set CELLPROMPT_SANDBOX_MEMORY=16g"):
        check_fits(path, "4g", declared="16g")


def test_not_hdf5_is_not_judged(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("x" * 100)
    assert check_fits(other, "1m") is None


@pytest.mark.parametrize(("text", "expected"), [("512m", 512 << 20), ("4g", 4 * GIB),
                                                ("1.5G", int(1.5 * GIB)), ("4GiB", 4 * GIB),
                                                (1234, 1234)])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_words() -> None:
    with pytest.raises(DatasetError, match="not a size"):
        parse_size("lots")


def test_cli_show_huge_file_in_seconds(huge: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from cellprompt.cli.main import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["cellprompt", "datasets", "show", str(huge)])
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main()
        raise SystemExit(0)
    out = capsys.readouterr().out
    assert info.value.code in (0, None) and time.monotonic() - started < 5
    assert f"{N_CELLS} cells x {N_GENES} genes" in out and "in memory" in out
    assert "cell_type (categorical, 4 categories" in out
