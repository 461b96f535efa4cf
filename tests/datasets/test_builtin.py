"""Built-in datasets: materialised once from scanpy's package data, then reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.datasets import DatasetMetadata, builtin_names, describe, resolve
from cellprompt.datasets.files import sha256_file
from cellprompt.errors import DatasetError


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


def test_names() -> None:
    assert {"pbmc68k_reduced", "krumsiek11"} <= set(builtin_names())


@pytest.mark.parametrize(("name", "shape", "label"), [
    ("pbmc68k_reduced", (700, 765), "bulk_labels"),
    ("krumsiek11", (640, 11), "cell_type"),
])
def test_materialised_with_metadata(datasets_dir: Path, name: str, shape: tuple[int, int],
                                    label: str) -> None:
    resolved = resolve(f"builtin:{name}", datasets_dir=datasets_dir)
    assert resolved.path == datasets_dir / "builtin" / f"{name}.h5ad"
    assert resolved.name == name and resolved.source == "builtin"
    summary = describe(resolved.path)
    assert (summary.n_obs, summary.n_vars) == shape
    column = next(c for c in summary.obs if c.name == label)
    assert column.dtype == "category" and column.n_categories and column.n_categories > 1
    meta = DatasetMetadata.model_validate_json(resolved.path.with_suffix(".json").read_text())
    assert meta.schema_version == 1 and meta.source == "builtin"
    assert meta.cell_type_key == label and (meta.n_obs, meta.n_vars) == shape
    assert meta.sha256 == sha256_file(resolved.path)
    assert [p.name for p in resolved.path.parent.iterdir() if p.name.startswith(".")] == []


def test_reused_not_rewritten(datasets_dir: Path) -> None:
    first = resolve("builtin:krumsiek11", datasets_dir=datasets_dir)
    stamp = first.path.stat().st_mtime_ns
    again = resolve("builtin:krumsiek11", datasets_dir=datasets_dir)
    assert again.path.stat().st_mtime_ns == stamp
    assert again.metadata["sha256"] == first.metadata["sha256"]


def test_rewritten_when_file_damaged(datasets_dir: Path) -> None:
    path = resolve("builtin:krumsiek11", datasets_dir=datasets_dir).path
    path.write_bytes(b"oops")
    resolved = resolve("builtin:krumsiek11", datasets_dir=datasets_dir)
    assert describe(resolved.path).n_obs == 640


def test_unknown_builtin(datasets_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"unknown builtin dataset 'nope'.*krumsiek11"):
        resolve("builtin:nope", datasets_dir=datasets_dir)
