"""Sealing the agent's copy: nothing but analysis may lead from it to the truth.

* **Row order** carries no truth: rows are shuffled (krumsiek11 is stored trajectory by
  trajectory in time order, so position alone gave a perfect pseudotime).
* **Cell ids** carry no truth: each becomes a salted hash (krumsiek11's ids *were* the
  simulation time; pbmc ids are 10x barcodes anyone can look up).
* **Public sources cannot be joined back**: a random subset of cells is kept and every
  float value (X, .raw, layers, float obs columns, obsm) gets a small relative noise, so
  neither ids, nor order, nor exact values match the original anyone else holds.

The salt is random per agent copy and never leaves the host; the truth is recomputed on
the sealed copy (see `truths.py`), so it matches the cells the agent actually has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cellprompt.tasks.spec import Seal

AUTO_SUBSAMPLE = 0.9  # public sources: keep 90% of the cells
AUTO_PERTURB = 0.01  # public sources: 1% relative noise on float values
MIN_CELLS_FOR_SUBSAMPLE = 50


@dataclass(frozen=True)
class SealPlan:
    """The resolved sealing of one copy (auto values decided from the source)."""

    shuffle: bool
    hash_ids: bool
    subsample: float
    perturb: float

    @classmethod
    def resolve(cls, seal: Seal, public: bool) -> SealPlan:
        return cls(shuffle=seal.shuffle, hash_ids=seal.hash_ids,
                   subsample=seal.subsample if seal.subsample is not None
                   else (AUTO_SUBSAMPLE if public else 1.0),
                   perturb=seal.perturb if seal.perturb is not None
                   else (AUTO_PERTURB if public else 0.0))


def _rng(salt: bytes, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(salt + purpose.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def hashed_id(salt: bytes, name: str) -> str:
    """A salted hash of a cell id: stable within one copy, meaningless without the salt."""
    return "c" + hashlib.sha256(salt + b"\0" + name.encode()).hexdigest()[:16]


def _is_counts(values: np.ndarray) -> bool:
    """Integer-valued data (raw counts) keeps its integers: noise would make it non-counts."""
    sample = values[: 100_000]
    return bool(sample.size) and bool(np.all(np.equal(np.mod(sample, 1), 0)))


def _noisy(matrix: Any, rng: np.random.Generator, scale: float) -> Any:
    """`matrix` with every nonzero float value times (1 + N(0, scale)); zeros stay zero."""
    if scale <= 0:
        return matrix
    if sp.issparse(matrix):
        m = matrix.copy()
        if m.dtype.kind == "f" and not _is_counts(m.data):
            m.data = (m.data * (1 + rng.normal(0.0, scale, size=m.data.shape))).astype(m.dtype)
        return m
    arr = np.asarray(matrix)
    if arr.dtype.kind != "f" or _is_counts(arr.ravel()):
        return matrix
    return (arr * (1 + rng.normal(0.0, scale, size=arr.shape))).astype(arr.dtype)


def _perturb(adata: Any, rng: np.random.Generator, scale: float) -> None:
    if scale <= 0:
        return
    adata.X = _noisy(adata.X, rng, scale)
    for key in list(adata.layers.keys()):
        adata.layers[key] = _noisy(adata.layers[key], rng, scale)
    if adata.raw is not None:
        raw = adata.raw.to_adata()
        raw.X = _noisy(raw.X, rng, scale)
        adata.raw = raw
    for col in adata.obs.columns:  # per-cell metrics (n_counts, n_genes…) would key a join
        series = adata.obs[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        values = series.to_numpy(dtype=np.float64)
        noisy = values * (1 + rng.normal(0.0, scale, size=values.shape))
        if _is_counts(values[np.isfinite(values)]):
            noisy = np.round(noisy)
        adata.obs[col] = noisy.astype(series.dtype)
    for key in list(adata.obsm.keys()):
        value = adata.obsm[key]
        if not isinstance(value, pd.DataFrame):
            adata.obsm[key] = _noisy(value, rng, scale)


def seal(adata: Any, plan: SealPlan, salt: bytes) -> tuple[Any, np.ndarray]:
    """The sealed AnnData and, for each of its rows, the row position it had in `adata`.

    The positions stay on the host: truth recipes use them (krumsiek11's simulation time
    is a function of the original position) and they never enter the agent's copy.
    """
    n = adata.n_obs
    rng = _rng(salt, "rows")
    keep = n
    if plan.subsample < 1.0 and n >= MIN_CELLS_FOR_SUBSAMPLE:
        keep = max(MIN_CELLS_FOR_SUBSAMPLE, round(n * plan.subsample))
    rows = rng.choice(n, size=keep, replace=False) if keep < n else np.arange(n)
    rows = rng.permutation(rows) if plan.shuffle else np.sort(rows)
    sealed = adata[rows].copy()
    if plan.hash_ids:
        sealed.obs_names = pd.Index([hashed_id(salt, str(i)) for i in sealed.obs_names])
    sealed.obs.index.name = None
    _perturb(sealed, _rng(salt, "values"), plan.perturb)
    return sealed, rows
