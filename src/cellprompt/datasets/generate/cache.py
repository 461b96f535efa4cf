"""Generated datasets on disk: made once per parameter set, then reused like any file.

`<datasets_dir>/generated/<generator>-<key>.h5ad` plus `.json` metadata. The host file
holds the truth (it is the source the sealed agent copy is cut from); the agent only ever
sees the sealed copy, mounted under the reference's neutral name. The metadata description
is neutral too: cell and gene counts and what kind of counts they are.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

from cellprompt.datasets.files import atomic_write_model, atomic_write_with, sha256_file
from cellprompt.datasets.generate import GenRef, generate, parse_ref
from cellprompt.datasets.models import DatasetMetadata


def generated_path(ref: GenRef, datasets_dir: Path) -> Path:
    return datasets_dir / "generated" / f"{ref.generator}-{ref.key()}.h5ad"


def materialise_generated(ref: str, datasets_dir: Path) -> tuple[GenRef, Path, DatasetMetadata]:
    """The cached file for `ref` (generating it on first use) and its metadata."""
    parsed = parse_ref(ref)
    path = generated_path(parsed, datasets_dir)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            meta = DatasetMetadata.model_validate_json(meta_path.read_text())
            if meta.size_bytes == path.stat().st_size:
                return parsed, path, meta
        except ValueError:
            pass  # unreadable metadata: generate again
    made = generate(parsed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atomic_write_with(path, made.adata.write_h5ad, suffix=".h5ad")
    meta = DatasetMetadata(
        name=parsed.mount_name, source="generated", title="Generated single-cell dataset",
        description=made.description, n_obs=made.adata.n_obs, n_vars=made.adata.n_vars,
        size_bytes=path.stat().st_size, sha256=sha256_file(path),
        created_at=datetime.now(timezone.utc))
    atomic_write_model(meta_path, meta)
    return parsed, path, meta
