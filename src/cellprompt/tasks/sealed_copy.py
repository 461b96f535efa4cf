"""Writing a task's sealed agent copy by streaming, so a multi-GB source never sits in memory.

`seal.py` defines what sealing means on an in-memory AnnData; this module does the
same to a file with `cellprompt.datasets.stream.copy_rows`:

* the same rows, in the same order, from the same salt (`select_rows` draws exactly
  what `seal.seal` draws), renamed to the same salted hashes;
* the same relative noise on float values of X, layers, raw and obsm and on numeric
  obs columns, with integer-valued data (counts) left integer, judged like `seal.py`
  on the first 100,000 values of each element;
* the withheld parts left out of the copy and returned as the same truth JSON
  `materialise.withhold` builds, keyed by the copy's (hashed) cell ids.

Only the withheld columns are held whole in memory. A task with a truth *recipe*
(PCA, Leiden, ...) still needs the sealed data in memory for that recipe:
`load_for_truth` reads the copy back and re-attaches the withheld parts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellprompt.datasets.stream import Withheld, copy_rows, keys
from cellprompt.tasks.seal import MIN_CELLS_FOR_SUBSAMPLE, SealPlan, _is_counts, _rng, hashed_id
from cellprompt.tasks.spec import Withhold

_SECTIONS = ("obs", "var", "uns", "obsm", "varm", "obsp")


def select_rows(n: int, plan: SealPlan, salt: bytes) -> np.ndarray:
    """For each row of the copy, its row in the source: exactly the draws of `seal.seal`."""
    rng = _rng(salt, "rows")
    keep = n
    if plan.subsample < 1.0 and n >= MIN_CELLS_FOR_SUBSAMPLE:
        keep = max(MIN_CELLS_FOR_SUBSAMPLE, round(n * plan.subsample))
    rows = rng.choice(n, size=keep, replace=False) if keep < n else np.arange(n)
    return rng.permutation(rows) if plan.shuffle else np.sort(rows)


class Noise:
    """`seal.py`'s perturbation, applied block by block as `copy_rows` streams values."""

    def __init__(self, salt: bytes, scale: float) -> None:
        self.salt = salt
        self.scale = scale
        self._rngs: dict[str, np.random.Generator] = {}
        self._counts: dict[str, bool] = {}

    def _rng_for(self, element: str) -> np.random.Generator:
        if element not in self._rngs:
            digest = hashlib.sha256(element.encode()).hexdigest()[:16]
            self._rngs[element] = _rng(self.salt, f"values:{digest}")
        return self._rngs[element]

    def __call__(self, element: str, values: np.ndarray) -> np.ndarray:
        if self.scale <= 0 or values.dtype.kind not in "iuf" or values.dtype.kind == "b":
            return values
        rng = self._rng_for(element)
        if element.startswith("obs/"):  # a whole column: counts stay counts, after rounding
            as_float = values.astype(np.float64)
            noisy = as_float * (1 + rng.normal(0.0, self.scale, size=as_float.shape))
            if _is_counts(as_float[np.isfinite(as_float)]):
                noisy = np.round(noisy)
            return noisy.astype(values.dtype)
        if values.dtype.kind != "f":
            return values
        if element not in self._counts:  # decided on the copy's first values, as seal.py does
            self._counts[element] = _is_counts(values.ravel())
        if self._counts[element]:
            return values
        noise = rng.normal(0.0, self.scale, size=values.shape)
        return (values * (1 + noise)).astype(values.dtype)


def _source_names(source: Path) -> tuple[int, list[str]]:
    import h5py
    from anndata.io import read_elem

    with h5py.File(source, "r") as f:
        obs = f["obs"]
        key = obs.attrs.get("_index", "_index")
        names = [str(v) for v in read_elem(obs[key.decode() if isinstance(key, bytes) else key])]
    return len(names), names


def missing(source: Path, withhold: Withhold) -> dict[str, tuple[list[str], list[str]]]:
    """Withheld names the source does not have: section -> (absent, what it has)."""
    have = keys(source)
    found = {}
    for section in _SECTIONS:
        wanted = getattr(withhold, section)
        absent = [w for w in wanted if w not in have[section]]
        if absent:
            found[section] = (absent, have[section])
    return found


def write_sealed_copy(source: Path, dest: Path, plan: SealPlan, salt: bytes,
                      withhold: Withhold) -> tuple[Withheld, np.ndarray]:
    """Write the sealed copy of `source` to `dest` minus `withhold`; return it and the rows."""
    n, names = _source_names(source)
    rows = select_rows(n, plan, salt)
    new_names = [hashed_id(salt, names[r]) for r in rows] if plan.hash_ids else \
        [names[r] for r in rows]
    drop = {section: list(getattr(withhold, section)) for section in _SECTIONS}
    # scanpy's colour palettes reveal the number and order of a withheld column's categories
    drop["uns"] += [f"{c}_colors" for c in withhold.obs]
    withheld = copy_rows(source, dest, rows, obs_names=new_names, drop=drop,
                         transform=Noise(salt, plan.perturb) if plan.perturb > 0 else None)
    for column in withhold.obs:
        withheld.parts.get("uns", {}).pop(f"{column}_colors", None)
    if not withheld.parts.get("uns", True):
        withheld.parts.pop("uns")
    return withheld, rows


def truth_json(withheld: Withheld, withhold: Withhold) -> dict[str, Any]:
    """The withheld parts as the truth JSON `materialise.withhold` makes from an AnnData."""
    from cellprompt.tasks.materialise import jsonable

    truth: dict[str, Any] = {}
    for section, index in (("obs", withheld.obs_names), ("var", withheld.var_names)):
        columns = getattr(withhold, section)
        if columns:
            values = withheld.parts.get(section, {})
            truth[section] = {c: dict(zip(index, jsonable(pd.Series(values[c])), strict=True))
                              for c in columns}
    for section in ("uns", "obsm", "varm", "obsp"):
        names = getattr(withhold, section)
        if not names:
            continue
        index = withheld.obs_names if section in ("obsm", "obsp") else withheld.var_names
        part: dict[str, Any] = {}
        for key in names:
            value = withheld.parts[section][key]
            if section in ("obsm", "varm") and not isinstance(value, pd.DataFrame):
                value = dict(zip(index, np.asarray(value).tolist(), strict=True))
            part[key] = jsonable(value)
        truth[section] = part
    return truth


def load_for_truth(copy: Path, withheld: Withheld) -> Any:
    """The sealed copy in memory with its withheld parts back, for a truth recipe to run on."""
    import anndata as ad

    adata = ad.read_h5ad(copy)
    parts = withheld.parts
    for column, values in parts.get("obs", {}).items():
        adata.obs[column] = np.asarray(values) if not isinstance(values, pd.Categorical) \
            else values
    for column, values in parts.get("var", {}).items():
        adata.var[column] = values
    for section in ("uns", "obsm", "varm", "obsp"):
        for key, value in parts.get(section, {}).items():
            getattr(adata, section)[key] = value
    return adata
