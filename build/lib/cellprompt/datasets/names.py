"""Names that become file stems under `/data/` and the datasets folder: no path tricks."""

from __future__ import annotations

import re

from cellprompt.errors import DatasetError

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_dataset_id(dataset_id: str) -> None:
    if not _SAFE.fullmatch(dataset_id) or ".." in dataset_id:
        raise DatasetError(f"invalid Census dataset id {dataset_id!r}: ids are like "
                           "'0895c838-e550-48a3-a777-dbcd35d30272'")


def safe_stem(stem: str) -> str:
    """A file stem usable as `/data/<stem>.h5ad`: unsafe characters become `_`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", stem).strip("._") or "dataset"
    return cleaned
