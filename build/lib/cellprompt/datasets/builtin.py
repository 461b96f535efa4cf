"""Datasets that ship inside installed packages (scanpy's package data): usable with no network.

Each is written once to `<datasets_dir>/builtin/NAME.h5ad` + `NAME.json` so that every
consumer (sandbox mounts, tasks, `describe`) deals with a plain file like any other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cellprompt.datasets.files import atomic_write_model, atomic_write_with, sha256_file
from cellprompt.datasets.models import DatasetMetadata
from cellprompt.errors import DatasetError

if TYPE_CHECKING:  # anndata takes a second to import; the CLI must start fast
    import anndata as ad


def _pbmc68k_reduced() -> ad.AnnData:
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


def _krumsiek11() -> ad.AnnData:
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scanpy warns that the simulated cell names repeat
        adata = sc.datasets.krumsiek11()
    adata.obs_names_make_unique()
    # uns["highlights"] maps cell positions (ints) to fate labels; h5ad keys must be strings
    adata.uns["highlights"] = {str(k): v for k, v in adata.uns["highlights"].items()}
    return adata


def _cellcycle_sim() -> ad.AnnData:
    from cellprompt.datasets.simulated import cellcycle_sim

    return cellcycle_sim()


def _trajectory_sim() -> ad.AnnData:
    from cellprompt.datasets.simulated import trajectory_sim

    return trajectory_sim()


@dataclass(frozen=True)
class _Builtin:
    load: Callable[[], ad.AnnData]
    title: str
    description: str
    cell_type_key: str | None
    # a public dataset (anyone can hold the original): agent copies are subsampled and perturbed
    public: bool = True


_BUILTINS: dict[str, _Builtin] = {
    "pbmc68k_reduced": _Builtin(
        _pbmc68k_reduced, "PBMC 68k (reduced)",
        "10x Genomics peripheral blood mononuclear cells, subsampled to 700 cells and 765 "
        "genes, normalised and scaled; cell types in obs['bulk_labels'].", "bulk_labels"),
    "krumsiek11": _Builtin(
        _krumsiek11, "Krumsiek 2011 myeloid progenitors (simulated)",
        "640 simulated cells x 11 genes of a boolean myeloid differentiation network; "
        "cell fates in obs['cell_type'].", "cell_type"),
    "cellcycle_sim": _Builtin(
        _cellcycle_sim, "Simulated cycling cells",
        "900 simulated cells x 697 genes (raw counts) of three cell types, each cell in G1, S "
        "or G2M; the Tirosh et al. S and G2M gene lists in uns['cell_cycle_genes'].", None,
        public=False),
    "trajectory_sim": _Builtin(
        _trajectory_sim, "Simulated branching differentiation",
        "800 simulated cells x 355 genes (raw counts) along a trunk that splits into two "
        "branches; progenitor marker genes in uns['progenitor_markers'].", None, public=False),
}


def is_public(name: str) -> bool:
    """Whether a builtin's original is public (so its agent copies must not join back to it)."""
    spec = _BUILTINS.get(name)
    return spec.public if spec is not None else True


def builtin_names() -> list[str]:
    return sorted(_BUILTINS)


def builtin_path(name: str, datasets_dir: Path) -> Path:
    return datasets_dir / "builtin" / f"{name}.h5ad"


def materialise_builtin(name: str, datasets_dir: Path) -> tuple[Path, DatasetMetadata]:
    """Write the builtin once; later calls return the file already there."""
    spec = _BUILTINS.get(name)
    if spec is None:
        raise DatasetError(f"unknown builtin dataset {name!r}: choose one of "
                           f"{', '.join(builtin_names())}")
    path = builtin_path(name, datasets_dir)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            meta = DatasetMetadata.model_validate_json(meta_path.read_text())
            if meta.size_bytes == path.stat().st_size:
                return path, meta
        except ValueError:
            pass  # unreadable metadata: write both again
    adata = spec.load()
    atomic_write_with(path, adata.write_h5ad, suffix=".h5ad")
    now = datetime.now(timezone.utc)
    meta = DatasetMetadata(
        name=name, source="builtin", title=spec.title, description=spec.description,
        n_obs=adata.n_obs, n_vars=adata.n_vars, cell_type_key=spec.cell_type_key,
        size_bytes=path.stat().st_size, sha256=sha256_file(path), created_at=now,
    )
    atomic_write_model(meta_path, meta)
    return path, meta
