"""Row-permuted, row-subset copies of an `.h5ad` in bounded memory, element by element.

An agent copy of a Census dataset can be several GB; loading it to shuffle its rows
would need several GB of RAM on the host, for every task. `copy_rows` instead walks
the file element by element with anndata's element API (`read_elem`/`write_elem`,
`sparse_dataset`) and h5py:

* `X`, `layers/*`, `raw/X` and `obsm/*` are copied in row blocks of at most
  `chunk_bytes` (sparse blocks sized by their actual row lengths). Destination row `k`
  is source row `rows[k]`; each block is read in ascending row order (HDF5 cannot read
  out of order), put in destination order in memory and appended.
* `obs` is rebuilt one column at a time; `var`, `varm` and `uns` are copied by HDF5
  itself (no parsing); `obsp` (cell x cell graphs) is permuted on both axes in memory.
* Whatever `drop` names is left out of the copy and returned instead (`Withheld`), in
  destination row order: the only part of the data held whole in memory.

`transform(element, values)` sees every stored float value block of matrices and
obsm arrays and every numeric obs column, withheld or kept, before it is written or
returned (sealing adds noise there, so the truth matches the agent's values). Sealing decisions
(which rows, which names, how much noise) belong to the caller; this module only moves
data.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

Transform = Callable[[str, np.ndarray], np.ndarray]
StreamProgress = Callable[[str, int, int], None]  # (element, rows done, rows in all)

CHUNK_BYTES = 64 << 20
_SECTIONS = ("obs", "var", "obsm", "varm", "obsp", "layers", "uns")


def _io() -> tuple[Any, Any, Any]:
    from anndata.io import read_elem, sparse_dataset, write_elem

    return read_elem, write_elem, sparse_dataset


@dataclass
class Withheld:
    """The parts `drop` named, values in destination row order, plus the names to key them by."""

    obs_names: list[str]
    var_names: list[str]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)


def _encoding(node: h5py.Group | h5py.Dataset) -> str:
    value = node.attrs.get("encoding-type", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _frame_columns(group: h5py.Group) -> list[str]:
    order = group.attrs.get("column-order", [])
    return [c.decode() if isinstance(c, bytes) else str(c) for c in order]


def _frame_index(group: h5py.Group) -> np.ndarray:
    read_elem, _, _ = _io()
    key = group.attrs.get("_index", "_index")
    return np.asarray(read_elem(group[key.decode() if isinstance(key, bytes) else key]))


def keys(source: str | Path) -> dict[str, list[str]]:
    """Column names of obs/var and keys of obsm/varm/obsp/layers/uns, for checking `drop`."""
    with h5py.File(source, "r") as f:
        found: dict[str, list[str]] = {}
        for section in _SECTIONS:
            node = f.get(section)
            if section in ("obs", "var"):
                found[section] = _frame_columns(node) if isinstance(node, h5py.Group) else []
            else:
                found[section] = sorted(node.keys()) if isinstance(node, h5py.Group) else []
        return found


def _dataset_kwargs(like: h5py.Dataset) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"chunks": True}
    if like.compression:
        kwargs.update(compression=like.compression, compression_opts=like.compression_opts)
    return kwargs


# ---------------------------------------------------------------- row blocks

def _blocks(weights: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Split positions 0..len(weights) into runs whose weights sum to at most `budget`."""
    n = len(weights)
    if n == 0:
        return
    ends = np.cumsum(weights, dtype=np.int64)
    start = 0
    while start < n:
        base = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, base + budget, side="right"))
        stop = max(stop, start + 1)
        yield start, stop
        start = stop


def _reordered(block: Any, idx: np.ndarray, order: np.ndarray) -> Any:
    """`block` holds rows `idx[order]` (ascending); return them in the order of `idx`."""
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return block[back]


def _copy_dense(src: h5py.Dataset, dst_parent: h5py.Group, name: str, rows: np.ndarray,
                element: str, transform: Transform | None, chunk_bytes: int,
                progress: StreamProgress | None) -> None:
    row_bytes = max(1, int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize)
    dst = dst_parent.create_dataset(name, shape=(len(rows), *src.shape[1:]), dtype=src.dtype,
                                    **_dataset_kwargs(src))
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for a, b in _blocks(np.full(len(rows), row_bytes), chunk_bytes):
        idx = rows[a:b]
        order = np.argsort(idx, kind="stable")
        block = _reordered(src[idx[order]], idx, order)
        if transform is not None and block.dtype.kind == "f":
            block = transform(element, block)
        dst[a:b] = block
        if progress:
            progress(element, b, len(rows))


def _read_csr_rows(src: h5py.Group, indptr: np.ndarray, rows: np.ndarray,
                   shape: tuple[int, int]) -> sp.csr_matrix:
    """Rows `rows` (ascending) of a stored CSR matrix: one HDF5 read per run of adjacent rows.

    anndata's backed indexing does the same with per-call overheads (version checks,
    index validation) that triple the time on a million rows.
    """
    data, indices = src["data"], src["indices"]
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    parts_d, parts_i = [], []
    for run in np.split(rows, breaks) if len(rows) else []:
        a, b = int(indptr[run[0]]), int(indptr[run[-1] + 1])
        if b > a:
            parts_d.append(data[a:b])
            parts_i.append(indices[a:b])
    lengths = indptr[rows + 1] - indptr[rows]
    new_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(indptr.dtype)
    return sp.csr_matrix(
        (np.concatenate(parts_d) if parts_d else np.empty(0, data.dtype),
         np.concatenate(parts_i) if parts_i else np.empty(0, indices.dtype), new_indptr),
        shape=(len(rows), shape[1]))


def _write_blocks(dst_parent: h5py.Group, name: str, blocks: Iterator[tuple[Any, int]],
                  empty: Any, element: str, transform: Transform | None, kwargs: dict[str, Any],
                  progress: StreamProgress | None, total: int) -> None:
    """Write the first block, append the rest (`empty` when there is none), reporting progress.

    `blocks` yields each sparse block with the number of rows done after it.
    """
    _, write_elem, sparse_dataset = _io()
    written = False
    for block, done in blocks:
        if transform is not None and block.dtype.kind == "f":
            block.data = transform(element, block.data)
        if written:
            sparse_dataset(dst_parent[name]).append(block)
        else:
            write_elem(dst_parent, name, block, dataset_kwargs=kwargs)
            written = True
        if progress:
            progress(element, done, total)
    if not written:
        write_elem(dst_parent, name, empty)


def _copy_csr(src: h5py.Group, dst_parent: h5py.Group, name: str, rows: np.ndarray,
              element: str, transform: Transform | None, chunk_bytes: int,
              progress: StreamProgress | None) -> None:
    n_rows, n_cols = (int(v) for v in src.attrs["shape"])
    shape = (n_rows, n_cols)
    indptr = src["indptr"][()]
    per_value = src["data"].dtype.itemsize + src["indices"].dtype.itemsize
    lengths = np.diff(indptr)[rows] * per_value + 1

    def blocks() -> Iterator[tuple[Any, int]]:
        for a, b in _blocks(lengths, chunk_bytes):
            idx = rows[a:b]
            order = np.argsort(idx, kind="stable")
            yield _reordered(_read_csr_rows(src, indptr, idx[order], shape), idx, order), b

    _write_blocks(dst_parent, name, blocks(), sp.csr_matrix((0, shape[1]), dtype=src["data"].dtype),
                  element, transform, _dataset_kwargs(src["data"]), progress, len(rows))


def _copy_csc(src: h5py.Group, dst_parent: h5py.Group, name: str, rows: np.ndarray,
              element: str, transform: Transform | None, chunk_bytes: int,
              progress: StreamProgress | None) -> None:
    """Column blocks of a CSC matrix, each with its rows selected and permuted."""
    _, _, sparse_dataset = _io()
    backed = sparse_dataset(src)
    n_cols = backed.shape[1]
    indptr = src["indptr"][()]
    per_value = src["data"].dtype.itemsize + src["indices"].dtype.itemsize

    def blocks() -> Iterator[tuple[Any, int]]:
        for a, b in _blocks(np.diff(indptr) * per_value + 1, chunk_bytes):
            block = sp.csc_matrix(sp.csc_matrix(backed[:, a:b])[rows, :])
            block.sort_indices()
            yield block, int(len(rows) * b / max(1, n_cols))

    _write_blocks(dst_parent, name, blocks(), sp.csc_matrix((len(rows), 0), dtype=backed.dtype),
                  element, transform, _dataset_kwargs(src["data"]), progress, len(rows))


def copy_matrix(src: h5py.Group | h5py.Dataset, dst_parent: h5py.Group, name: str,
                rows: np.ndarray, *, element: str = "X", transform: Transform | None = None,
                chunk_bytes: int = CHUNK_BYTES, progress: StreamProgress | None = None) -> None:
    """Write `src` with rows `rows` (in that order) as `dst_parent[name]`, block by block."""
    args = (src, dst_parent, name, rows, element, transform, chunk_bytes, progress)
    if isinstance(src, h5py.Dataset):
        _copy_dense(*args)
    elif _encoding(src) == "csr_matrix":
        _copy_csr(*args)
    elif _encoding(src) == "csc_matrix":
        _copy_csc(*args)
    else:  # a dataframe in obsm, or an encoding we do not stream: small, take it whole
        read_elem, write_elem, _ = _io()
        value = read_elem(src)
        value = value.iloc[rows] if isinstance(value, pd.DataFrame) else value[rows]
        write_elem(dst_parent, name, value)


# ---------------------------------------------------------------- frames and mappings

def _copy_group_without(src: h5py.Group, dst_parent: h5py.Group, name: str,
                        drop: Sequence[str]) -> None:
    """HDF5-level copy of a group (no parsing), minus the members named in `drop`."""
    src.file.copy(src, dst_parent, name=name)
    copied = dst_parent[name]
    for key in drop:
        if key in copied:
            del copied[key]
    if "column-order" in copied.attrs:
        kept = [c for c in _frame_columns(copied) if c not in set(drop)]
        copied.attrs["column-order"] = np.array(kept, dtype=object) if kept else \
            np.array([], dtype="S1")


def _write_obs(src: h5py.Group, dst: h5py.File, rows: np.ndarray, names: Sequence[str],
               drop: Sequence[str], transform: Transform | None,
               withheld: dict[str, Any]) -> None:
    read_elem, write_elem, _ = _io()
    write_elem(dst, "obs", pd.DataFrame(index=pd.Index(list(names), dtype=object)))
    obs = dst["obs"]
    kept = []
    for column in _frame_columns(src):
        values = read_elem(src[column])
        values = values[rows] if not isinstance(values, pd.Series) else values.iloc[rows]
        if transform is not None and isinstance(values, np.ndarray) and values.ndim == 1 \
                and values.dtype.kind in "iuf":
            values = transform(f"obs/{column}", values)
        if column in drop:
            withheld[column] = values
            continue
        write_elem(obs, column, values)
        kept.append(column)
    obs.attrs["column-order"] = np.array(kept, dtype=object) if kept else \
        np.array([], dtype="S1")


def _members(group: h5py.Group | None) -> list[tuple[str, Any]]:
    """A source group's members by name (none when the file lacks the group)."""
    return [] if group is None else [(key, group[key]) for key in sorted(group.keys())]


def _mapping(src: h5py.File, dst: h5py.File, section: str) -> tuple[h5py.Group | None,
                                                                      h5py.Group]:
    _, write_elem, _ = _io()
    write_elem(dst, section, {})
    node = src.get(section)
    return (node if isinstance(node, h5py.Group) else None), dst[section]


def copy_rows(source: str | Path, dest: str | Path, rows: Sequence[int] | np.ndarray, *,
              obs_names: Sequence[str] | None = None,
              drop: Mapping[str, Sequence[str]] | None = None,
              transform: Transform | None = None, chunk_bytes: int = CHUNK_BYTES,
              progress: StreamProgress | None = None) -> Withheld:
    """Write `dest`: the `.h5ad` `source` with rows `rows` in that order, minus `drop`.

    `obs_names` renames the destination rows (default: the source names, reordered).
    `drop` maps a section (obs, var, obsm, varm, obsp, layers, uns) to the columns or
    keys to leave out; absent ones are ignored (check with `keys` first). Returns what
    was left out, rows in destination order.
    """
    read_elem, write_elem, _ = _io()
    rows = np.asarray(rows, dtype=np.int64)
    drop = {k: list(v) for k, v in (drop or {}).items()}
    with warnings.catch_warnings(), h5py.File(source, "r") as src, h5py.File(dest, "w") as dst:
        warnings.simplefilter("ignore")  # anndata's experimental-API notices
        for key in ("encoding-type", "encoding-version"):
            if key in src.attrs:
                dst.attrs[key] = src.attrs[key]
        names = obs_names if obs_names is not None else \
            [str(v) for v in _frame_index(src["obs"])[rows]]
        if len(names) != len(rows):
            raise ValueError(f"{len(names)} obs names for {len(rows)} rows")
        out = Withheld(obs_names=[str(n) for n in names],
                       var_names=[str(v) for v in _frame_index(src["var"])])
        obs_withheld: dict[str, Any] = {}
        _write_obs(src["obs"], dst, rows, names, drop.get("obs", []), transform, obs_withheld)
        if obs_withheld:
            out.parts["obs"] = obs_withheld
        for section in ("var", "varm", "uns"):
            if section in src:
                gone = [k for k in drop.get(section, []) if k in src[section]] \
                    if section != "var" else [c for c in drop.get("var", [])
                                              if c in _frame_columns(src["var"])]
                if gone:
                    out.parts[section] = {k: read_elem(src[section][k]) for k in gone}
                _copy_group_without(src[section], dst, section, gone)
        if "X" in src:
            copy_matrix(src["X"], dst, "X", rows, element="X", transform=transform,
                        chunk_bytes=chunk_bytes, progress=progress)
        for section in ("layers", "obsm"):
            source_group, target = _mapping(src, dst, section)
            for key, member in _members(source_group):
                if key in drop.get(section, []):
                    value = read_elem(member)
                    value = value.iloc[rows] if isinstance(value, pd.DataFrame) else value[rows]
                    if transform is not None and isinstance(value, np.ndarray) \
                            and value.dtype.kind == "f":
                        value = transform(f"{section}/{key}", value)
                    out.parts.setdefault(section, {})[key] = value
                    continue
                copy_matrix(member, target, key, rows, element=f"{section}/{key}",
                            transform=transform, chunk_bytes=chunk_bytes, progress=progress)
        source_group, target = _mapping(src, dst, "obsp")
        for key, member in _members(source_group):
            value = read_elem(member)
            value = value[rows][:, rows]
            if key in drop.get("obsp", []):
                out.parts.setdefault("obsp", {})[key] = value
            else:
                write_elem(target, key, value)
        if isinstance(src.get("raw"), h5py.Group):
            raw = dst.create_group("raw")
            for key, value in src["raw"].attrs.items():
                raw.attrs[key] = value
            for key in src["raw"]:
                if key == "X":
                    copy_matrix(src["raw"]["X"], raw, "X", rows, element="raw/X",
                                transform=transform, chunk_bytes=chunk_bytes, progress=progress)
                else:
                    src.copy(src["raw"][key], raw, name=key)
    return out
