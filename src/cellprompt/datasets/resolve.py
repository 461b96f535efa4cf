"""The one place a dataset reference becomes a file: tasks, runs and sandbox mounts all call it.

References: `builtin:NAME`, `census:DATASET_ID[@VERSION]`, `gen:GENERATOR?seed=…&cells=…`
(a generated dataset with known truth, see `datasets.generate`), or a path to an `.h5ad`.
"""

from __future__ import annotations

from pathlib import Path

from cellprompt.config import get_settings
from cellprompt.datasets.builtin import materialise_builtin
from cellprompt.datasets.census import download, local_census_copy
from cellprompt.datasets.h5ad import check_h5ad
from cellprompt.datasets.models import DatasetMetadata, LocalDataset, ResolvedDataset
from cellprompt.datasets.names import safe_stem
from cellprompt.datasets.transfer import Progress
from cellprompt.errors import DatasetError


def resolve(ref: str, *, datasets_dir: Path | None = None,
            progress: Progress | None = None) -> ResolvedDataset:
    """Turn `ref` into a validated local `.h5ad`, fetching or materialising it on first use."""
    ref = ref.strip()
    if not ref:
        raise DatasetError("empty dataset reference: pass builtin:NAME, census:ID, gen:NAME or a "
                           "path")
    datasets_dir = Path(datasets_dir) if datasets_dir is not None else get_settings().datasets_dir
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        path, meta = materialise_builtin(name, datasets_dir)
        return ResolvedDataset(ref=ref, name=name, path=path, source="builtin",
                               metadata=meta.model_dump(mode="json", exclude_none=True))
    if ref.startswith("gen:"):
        from cellprompt.datasets.generate.cache import materialise_generated

        parsed, path, meta = materialise_generated(ref, datasets_dir)
        return ResolvedDataset(ref=ref, name=parsed.mount_name, path=path, source="generated",
                               metadata=meta.model_dump(mode="json", exclude_none=True))
    if ref.startswith("census:"):
        dataset_id, _, version = ref.removeprefix("census:").partition("@")
        if not dataset_id:
            raise DatasetError(f"dataset reference {ref!r} has no id: use census:DATASET_ID")
        cached = local_census_copy(dataset_id, version or None, datasets_dir)
        if cached is not None:  # reuse without touching the network
            return ResolvedDataset(ref=ref, name=dataset_id,
                                   path=datasets_dir / f"{dataset_id}.h5ad", source="census",
                                   metadata=cached.model_dump(mode="json", exclude_none=True))
        return download(dataset_id, version or None, datasets_dir, progress)
    return _local(ref)


def data_source(ref: str) -> str:
    """Where a reference's data comes from, without resolving it: `generated` (drawn fresh,
    cannot be memorised), `public` (a library-bundled or Census dataset a model may have seen),
    `simulated` (a fixed built-in simulation) or `local`."""
    ref = ref.strip()
    if ref.startswith("gen:"):
        return "generated"
    if ref.startswith("census:"):
        return "public"
    if ref.startswith("builtin:"):
        from cellprompt.datasets.builtin import is_public

        return "public" if is_public(ref.removeprefix("builtin:")) else "simulated"
    return "local"


def _local(ref: str) -> ResolvedDataset:
    path = Path(ref.removeprefix("file://")).expanduser()
    if path.suffix != ".h5ad" and not path.exists() and ":" in ref:
        raise DatasetError(f"unknown dataset reference {ref!r}: use builtin:NAME, "
                           "census:DATASET_ID[@VERSION] or a path to an .h5ad file")
    check_h5ad(path)
    path = path.resolve()
    meta_path = path.with_suffix(".json")
    metadata: dict = {}
    if meta_path.is_file():
        try:
            metadata = DatasetMetadata.model_validate_json(meta_path.read_text()).model_dump(
                mode="json", exclude_none=True)
        except ValueError:
            metadata = {}  # a foreign JSON beside the file is not ours to interpret
    return ResolvedDataset(ref=ref, name=safe_stem(path.stem), path=path, source="local",
                           metadata=metadata)


def list_local(datasets_dir: Path | None = None) -> list[LocalDataset]:
    """Every `.h5ad` in the datasets folder (and its `builtin/`), with its metadata if any."""
    datasets_dir = Path(datasets_dir) if datasets_dir is not None else get_settings().datasets_dir
    found = []
    for path in sorted([*datasets_dir.glob("*.h5ad"), *datasets_dir.glob("builtin/*.h5ad")]):
        meta: DatasetMetadata | None = None
        meta_path = path.with_suffix(".json")
        if meta_path.is_file():
            try:
                meta = DatasetMetadata.model_validate_json(meta_path.read_text())
            except ValueError:
                meta = None
        found.append(LocalDataset(
            name=path.stem, path=path, size_bytes=path.stat().st_size,
            source=meta.source if meta else ("builtin" if path.parent.name == "builtin"
                                             else "local"),
            metadata=meta.model_dump(mode="json", exclude_none=True) if meta else {},
        ))
    return found
