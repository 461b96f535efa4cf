"""Make the agent's sealed copy of a task's dataset and keep the truth on the host.

The copy is sealed (`seal.py`: shuffled rows, salted-hash ids, and for public
sources a perturbed subsample), the task's truth recipe runs on it (`truths.py`),
then the withheld parts are removed. The copy is written by streaming
(`sealed_copy.py`), so a multi-GB source never sits in host memory. It is cached under
`<datasets_dir>/agent-copies/<key>/` where the key hashes the source file's
identity (path, size, mtime), the withhold, seal and truth specs, so every trial
of a task shares one copy and editing any of them invalidates it. The truth is
JSON (`truth.json` beside the copy, with the salt in `salt`, both mode 0600):
graders read it on the host; it is never mounted into the agent's sandbox.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cellprompt.config import get_settings
from cellprompt.datasets import ResolvedDataset, resolve
from cellprompt.errors import TaskError
from cellprompt.sandbox.base import Mount
from cellprompt.tasks import truths
from cellprompt.tasks.seal import SealPlan
from cellprompt.tasks.spec import Task

FORMAT_VERSION = 2  # bump when the copy or truth layout changes: old cache entries are ignored


@dataclass(frozen=True)
class MaterialisedTask:
    """A task ready to run: the agent's dataset copy (a host file) and the withheld truth."""

    task: Task
    dataset: ResolvedDataset
    agent_dataset: Path
    truth: dict[str, Any]

    @property
    def mount_name(self) -> str:
        """The file name the agent sees under /data/."""
        return f"{self.dataset.name}.h5ad"

    def mount(self) -> Mount:
        return Mount(self.agent_dataset, self.mount_name)


def jsonable(value: Any) -> Any:
    """Withheld values as plain JSON (NaN -> null, structured arrays -> column dicts)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return {str(c): jsonable(value[c].to_numpy()) for c in value.columns}
    if isinstance(value, pd.Series | pd.Categorical | pd.Index):
        return jsonable(np.asarray(value, dtype=object))
    if sp.issparse(value):
        coo = sp.coo_matrix(value)
        return {"shape": list(coo.shape), "row": coo.row.tolist(), "col": coo.col.tolist(),
                "data": jsonable(coo.data)}
    if isinstance(value, np.ndarray):
        if value.dtype.names:
            return {name: jsonable(value[name]) for name in value.dtype.names}
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _cache_key(source: Path, task: Task) -> str:
    st = source.stat()
    ident = {"source": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "withhold": task.withhold.model_dump(), "seal": task.seal.model_dump(),
             "truth": task.truth.model_dump() if task.truth else None,
             "recipe": truths.fingerprint(task.truth.recipe) if task.truth else None,
             "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _missing(task: Task, section: str, wanted: list[str], have: list[str], dataset: str) -> None:
    absent = [w for w in wanted if w not in have]
    if absent:
        shown = ", ".join(sorted(have)[:20]) or "none"
        raise TaskError(f"task {task.id}: withhold.{section} names {', '.join(map(repr, absent))} "
                        f"which {dataset} does not have (its {section}: {shown})")


def withhold(adata: Any, task: Task, dataset: str) -> dict[str, Any]:
    """Remove the withheld parts from `adata` in place; return them as JSON-able truth."""
    w = task.withhold
    truth: dict[str, Any] = {}
    for section, frame, names in (("obs", adata.obs, w.obs), ("var", adata.var, w.var)):
        _missing(task, section, names, list(frame.columns), dataset)
        if names:
            index = [str(i) for i in frame.index]
            truth[section] = {c: dict(zip(index, jsonable(frame[c]), strict=True)) for c in names}
            frame.drop(columns=names, inplace=True)
    for col in w.obs:  # scanpy's colour palettes reveal the number and order of categories
        adata.uns.pop(f"{col}_colors", None)
    for section, names in (("uns", w.uns), ("obsm", w.obsm), ("varm", w.varm),
                           ("obsp", w.obsp)):
        store = getattr(adata, section)
        _missing(task, section, names, list(store.keys()), dataset)
        if not names:
            continue
        index = adata.obs_names if section in ("obsm", "obsp") else adata.var_names
        part: dict[str, Any] = {}
        for key in names:
            value = store[key]
            if section in ("obsm", "varm") and not isinstance(value, pd.DataFrame):
                value = dict(zip([str(i) for i in index], np.asarray(value).tolist(), strict=True))
            part[key] = jsonable(value)
            del store[key]
        truth[section] = part
    return truth


def _public(dataset: ResolvedDataset) -> bool:
    """Public sources (library-bundled builtins, Census) could be joined back to the original."""
    if dataset.source == "builtin":
        from cellprompt.datasets.builtin import is_public

        return is_public(dataset.name)
    return dataset.source == "census"


def _merge(truth: dict[str, Any], parts: dict[str, dict[str, Any]]) -> None:
    for section, values in parts.items():
        truth.setdefault(section, {}).update(jsonable(values))


_WITHHELD_SECTIONS = ("obs", "var", "uns", "obsm", "varm", "obsp")


def _write_copy(task: Task, dataset: ResolvedDataset, folder: Path) -> None:
    """Seal by streaming (`sealed_copy.py`): X and layers pass in blocks, never whole.

    Same rows, ids, noise and truth as `seal()` + `withhold()` on an in-memory AnnData;
    only the withheld parts are held whole, and a truth recipe's input (read back from
    the copy) is the one step that needs the data in memory.
    """
    from cellprompt.datasets.stream import keys
    from cellprompt.tasks.sealed_copy import load_for_truth, truth_json, write_sealed_copy

    have = keys(dataset.path)
    for section in _WITHHELD_SECTIONS:
        _missing(task, section, getattr(task.withhold, section), have[section], dataset.ref)
    salt = secrets.token_bytes(16)
    plan = SealPlan.resolve(task.seal, _public(dataset))
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        copy = staging / "agent.h5ad"
        withheld, origin = write_sealed_copy(dataset.path, copy, plan, salt, task.withhold)
        truth = truth_json(withheld, task.withhold)
        if task.truth is not None:
            try:
                computed = truths.compute(task.truth.recipe, load_for_truth(copy, withheld),
                                          origin, task.truth.params)
            except (KeyError, ValueError) as exc:
                raise TaskError(f"task {task.id}: truth recipe {task.truth.recipe!r} failed on "
                                f"{dataset.ref}: {type(exc).__name__}: {exc}") from None
            _merge(truth, computed)
        os.chmod(copy, 0o644)  # sandboxes run as another uid: world-readable
        for name, data in (("truth.json", json.dumps(truth).encode()), ("salt", salt.hex().encode())):
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        os.replace(staging / "salt", folder / "salt")
        os.replace(staging / "truth.json", folder / "truth.json")
        os.replace(copy, folder / "agent.h5ad")  # last: marks the entry done
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()


def materialise(task: Task, *, datasets_dir: Path | None = None) -> MaterialisedTask:
    """Resolve the task's dataset and return the sealed agent copy plus the truth, made once."""
    datasets_dir = Path(datasets_dir) if datasets_dir is not None else get_settings().datasets_dir
    dataset = resolve(task.dataset, datasets_dir=datasets_dir)
    folder = datasets_dir / "agent-copies" / f"{dataset.name}-{_cache_key(dataset.path, task)}"
    copy = folder / "agent.h5ad"
    if not (copy.is_file() and (folder / "truth.json").is_file()):
        _write_copy(task, dataset, folder)
    truth = json.loads((folder / "truth.json").read_text())
    return MaterialisedTask(task, dataset, copy, truth)
