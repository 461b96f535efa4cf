"""Reading the structure of an `.h5ad` straight from HDF5, so multi-GB files describe instantly.

Only group attributes and dataset shapes are touched; `X`, layers and matrices are
never read. Categorical columns cost one small read of their categories (a dozen at
most are shown). This is lighter than anndata's backed mode, which would still load
every obs/var column of a million-cell file into pandas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

from cellprompt.datasets.footprint import file_footprint
from cellprompt.datasets.models import ColumnSummary, DatasetSummary
from cellprompt.errors import DatasetError

_SHOWN_CATEGORIES = 12
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _attr_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encoding(node: h5py.Group | h5py.Dataset) -> str:
    return _attr_str(node.attrs.get("encoding-type", ""))


def _column(name: str, node: h5py.Group | h5py.Dataset) -> ColumnSummary:
    kind = _encoding(node)
    if isinstance(node, h5py.Group) and kind == "categorical":
        cats = node["categories"]
        n = int(cats.shape[0])
        shown = None
        if n <= _SHOWN_CATEGORIES:
            shown = [_attr_str(v) for v in cats.asstr()[()]] if cats.dtype.kind in "OSU" \
                else [str(v) for v in cats[()]]
        return ColumnSummary(name=name, dtype="category", n_categories=n, categories=shown)
    if isinstance(node, h5py.Group):  # nullable-integer / nullable-boolean / other encodings
        values = node.get("values")
        dtype = str(values.dtype) if isinstance(values, h5py.Dataset) else kind or "group"
        return ColumnSummary(name=name, dtype=f"{kind}[{dtype}]" if kind else dtype)
    if node.dtype.kind in "OS" or kind == "string-array":
        return ColumnSummary(name=name, dtype="string")
    return ColumnSummary(name=name, dtype=str(node.dtype))


def _dataframe(group: h5py.Group) -> tuple[int, list[ColumnSummary]]:
    index_key = _attr_str(group.attrs.get("_index", "_index"))
    order = [_attr_str(c) for c in group.attrs.get("column-order", [])]
    names = order or [k for k in group if k != index_key]
    n = int(group[index_key].shape[0]) if index_key in group else 0
    return n, [_column(name, group[name]) for name in names if name in group]


def _keys(file: h5py.File, key: str) -> list[str]:
    node = file.get(key)
    return sorted(node.keys()) if isinstance(node, h5py.Group) else []


def _x_info(file: h5py.File
            ) -> tuple[str | None, str | None, tuple[int, int] | None, int | None]:
    x = file.get("X")
    if x is None:
        return None, None, None, None
    if isinstance(x, h5py.Dataset):
        shape = (int(x.shape[0]), int(x.shape[1])) if x.ndim == 2 else None
        return "dense", str(x.dtype), shape, None
    shape_attr = x.attrs.get("shape", x.attrs.get("h5sparse_shape"))
    shape = (int(shape_attr[0]), int(shape_attr[1])) if shape_attr is not None else None
    data = x.get("data")
    fmt = _encoding(x) or _attr_str(x.attrs.get("h5sparse_format", "sparse"))
    if not isinstance(data, h5py.Dataset):
        return fmt, None, shape, None
    return fmt, str(data.dtype), shape, int(data.shape[0])


def check_h5ad(path: Path) -> None:
    """Raise a one-line `DatasetError` unless `path` is a readable AnnData file."""
    describe(path)


def describe(path: str | Path) -> DatasetSummary:
    """Shape, columns and keys of an `.h5ad` without loading its matrices."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset file {path} does not exist: check the path")
    if not path.is_file():
        raise DatasetError(f"dataset path {path} is not a file: pass the .h5ad file itself")
    with path.open("rb") as fh:
        if fh.read(8) != _HDF5_SIGNATURE:
            raise DatasetError(f"{path} is not an .h5ad (HDF5) file: it is corrupt or another format")
    try:
        with h5py.File(path, "r") as f:
            if not isinstance(f.get("obs"), h5py.Group) or not isinstance(f.get("var"), h5py.Group):
                raise DatasetError(
                    f"{path} is HDF5 but not AnnData (no obs/var groups): write it with "
                    "anndata's write_h5ad"
                )
            n_obs, obs = _dataframe(f["obs"])
            n_vars, var = _dataframe(f["var"])
            x_format, x_dtype, x_shape, x_nnz = _x_info(f)
            if x_shape is not None and (n_obs, n_vars) == (0, 0):
                n_obs, n_vars = x_shape
            return DatasetSummary(
                path=path, size_bytes=path.stat().st_size, n_obs=n_obs, n_vars=n_vars,
                x_format=x_format, x_dtype=x_dtype, obs=obs, var=var,
                uns_keys=_keys(f, "uns"), obsm_keys=_keys(f, "obsm"), varm_keys=_keys(f, "varm"),
                obsp_keys=_keys(f, "obsp"), layers=_keys(f, "layers"), x_nnz=x_nnz,
                memory_bytes=file_footprint(f).data_bytes,
            )
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"{path} is a corrupt or truncated .h5ad ({reason}): "
                           "download or write it again") from None
