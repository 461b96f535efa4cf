"""How much memory a dataset takes once loaded, read from its HDF5 layout alone.

A sandbox has a hard memory limit (`CELLPROMPT_SANDBOX_MEMORY`, 4 GB by default). A
dataset larger than that does not fail politely: the agent's first `read_h5ad` gets
the kernel OOM-killed, deep inside a trial, after the model has been paid for. So the
sandbox and the trial preflight ask `check_fits` first, which compares the dataset's
in-memory size (shapes x item sizes of every array, never reading one) plus what the
kernel itself needs against the limit, and refuses with the numbers and the setting
to change. A task that knows its analysis needs more (dense PCA on a big matrix, say)
declares it (`limits.memory` in the task file) and is held to that too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from cellprompt.config import size_bytes
from cellprompt.errors import DatasetError

GIB = 1 << 30
# The kernel before any data: Python, numpy, scipy, pandas, anndata and scanpy imported.
KERNEL_BASELINE_BYTES = 600 << 20
# Variable-length strings live as Python objects once loaded: pointer + object + text.
STRING_BYTES = 64


def parse_size(value: str | int) -> int:
    """Bytes from `"512m"`, `"4g"`, `"1.5G"`, `"4gb"`, `"4GiB"` or a plain number."""
    try:
        return size_bytes(value)
    except ValueError:
        raise DatasetError(f"memory size {value!r} is not a size: use e.g. 512m or 4g") from None


def human(n: int) -> str:
    """`6.3 GB`-style sizes in the binary units the limits use (`4g` is 4 GiB)."""
    for unit, size in (("TB", 1 << 40), ("GB", GIB), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def suggest(n: int, margin: float = 1.25) -> str:
    """A memory setting at least `margin` times `n` bytes, in whole GiB, e.g. `12g`."""
    return f"{max(1, math.ceil(n * margin / GIB))}g"


@dataclass(frozen=True)
class Footprint:
    """In-memory bytes of each top-level part of an `.h5ad` (X, layers, raw, obs, ...)."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def data_bytes(self) -> int:
        return sum(self.parts.values())

    @property
    def needed_bytes(self) -> int:
        """What a kernel needs to hold the loaded dataset (lower bound: no analysis yet)."""
        return self.data_bytes + KERNEL_BASELINE_BYTES

    def biggest(self, n: int = 3) -> str:
        top = sorted(self.parts.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return ", ".join(f"{k} {human(v)}" for k, v in top if v)


def _dataset_bytes(node: h5py.Dataset) -> int:
    count = math.prod(node.shape) if node.shape else 1
    if node.dtype.kind == "O" or h5py.check_string_dtype(node.dtype) is not None:
        return count * STRING_BYTES
    return count * node.dtype.itemsize


def _node_bytes(node: h5py.Group | h5py.Dataset) -> int:
    if isinstance(node, h5py.Dataset):
        return _dataset_bytes(node)
    total = 0

    def add(_: str, child: h5py.Group | h5py.Dataset) -> None:
        nonlocal total
        if isinstance(child, h5py.Dataset):
            total += _dataset_bytes(child)

    node.visititems(add)
    return total


def file_footprint(f: h5py.File) -> Footprint:
    """The footprint of an open `.h5ad`."""
    return Footprint({key: _node_bytes(f[key]) for key in f})


def footprint(path: str | Path) -> Footprint:
    """Bytes each part of the `.h5ad` at `path` takes in memory; reads metadata only."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            return file_footprint(f)
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"{path} is not a readable .h5ad ({reason}): check the file") from None


def check_fits(path: str | Path, memory: str | int, *, declared: str | int | None = None,
               name: str | None = None) -> Footprint | None:
    """Refuse, before any trial, a dataset or task that cannot fit the sandbox memory limit.

    `memory` is the sandbox limit (e.g. the `CELLPROMPT_SANDBOX_MEMORY` setting);
    `declared` is what the task says its analysis needs. Files that are not HDF5 are
    not ours to judge and pass (returns None).
    """
    path = Path(path)
    limit = parse_size(memory)
    label = name or path.name
    fix = "set CELLPROMPT_SANDBOX_MEMORY={s} (or pass --memory {s})"
    if declared is not None and (wanted := parse_size(declared)) > limit:
        raise DatasetError(
            f"the task needs {human(wanted)} of memory (its limits.memory) but the sandbox "
            f"memory limit is {human(limit)}: " + fix.format(s=suggest(wanted, 1.0)))
    if not h5py.is_hdf5(path):
        return None
    fp = footprint(path)
    if fp.needed_bytes > limit:
        raise DatasetError(
            f"dataset {label} needs at least {human(fp.needed_bytes)} of memory once loaded "
            f"({fp.biggest()}, plus {human(KERNEL_BASELINE_BYTES)} for the kernel) but the "
            f"sandbox memory limit is {human(limit)}: " + fix.format(s=suggest(fp.needed_bytes)))
    return fp
