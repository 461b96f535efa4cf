"""Datasets and agent copies made once on the driver, placed once on every node that runs trials.

A trial reloads its task by reference and calls `materialise`, which finds the
sealed agent copy by a key over the source file's path, size and mtime. The
agent copy is sealed with a random salt, so a node that sealed its own copy
would grade against other truth than the driver's run. Instead the driver
materialises each task once and ships the exact files — task file, source
dataset and its metadata, agent copy, truth, salt — to the *same absolute
paths* on each node, with the same size, mode and mtime: `materialise` there
finds the driver's copy as a cache hit. On a shared filesystem (or a one-machine
cluster) the files are already in place and nothing is copied; otherwise each
node fetches each file from the object store once, under a node-wide lock.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellprompt.errors import CellpromptError, RunError
from cellprompt.records.run import TrialSpec

LOCK_NAME = "cellprompt-staging.lock"  # in the node's temp folder, one per uid


@dataclass(frozen=True)
class StagedFile:
    """One file a trial needs, where it lives on the driver, and a handle to its bytes."""

    path: str  # absolute, identical on every node
    size: int
    mtime_ns: int
    mode: int
    content: Any  # an object-store reference (a `ray.ObjectRef`), fetched only where missing

    def in_place(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


def task_files(task_ref: str) -> list[Path]:
    """The files of one task, the agent copy's `agent.h5ad` last: it marks the cache entry complete."""
    from cellprompt.tasks import load_task, materialise

    files: list[Path] = []
    ref_path = Path(task_ref)
    if ref_path.is_file():
        files.append(ref_path.resolve())
    mat = materialise(load_task(task_ref))
    source = mat.dataset.path.resolve()
    files.append(source)
    meta = source.with_suffix(".json")
    if meta.is_file():
        files.append(meta)
    folder = mat.agent_dataset.parent.resolve()
    files += [folder / name for name in ("salt", "truth.json") if (folder / name).is_file()]
    files.append(mat.agent_dataset.resolve())
    return files


def plan_staging(specs: Iterable[TrialSpec], put: Callable[[bytes], Any]) -> dict[str, list[StagedFile]]:
    """Task ref → the files its trials need, each file's bytes `put` once (into the object store).

    A task that cannot load or materialise gets no entry: its trials record that error themselves.
    """
    bundles: dict[str, list[StagedFile]] = {}
    shared: dict[Path, StagedFile] = {}
    for ref in dict.fromkeys(s.task_ref for s in specs):
        try:
            paths = task_files(ref)
        except CellpromptError:
            continue
        bundle = []
        for path in paths:
            if path not in shared:
                st = path.stat()
                shared[path] = StagedFile(str(path), st.st_size, st.st_mtime_ns, st.st_mode & 0o7777,
                                          put(path.read_bytes()))
            bundle.append(shared[path])
        bundles[ref] = bundle
    return bundles


def _write(file: StagedFile, data: bytes) -> None:
    dest = Path(file.path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".staging-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, file.mode)
        os.utime(tmp, ns=(file.mtime_ns, file.mtime_ns))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_staged(files: list[StagedFile], fetch: Callable[[Any], bytes]) -> int:
    """Put `files` in place on this node unless they already are; returns how many were written.

    A stat per file when everything is in place; otherwise a node-wide lock makes the
    concurrent trials of one node fetch each missing file once.
    """
    if all(f.in_place() for f in files):
        return 0
    written = 0
    lock_path = Path(tempfile.gettempdir()) / f"{LOCK_NAME}.{os.getuid()}"
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for file in files:
                if not file.in_place():
                    _write(file, fetch(file.content))
                    written += 1
    except OSError as exc:
        raise RunError(f"cannot stage {exc.filename or 'a dataset'} on this Ray node: {exc.strerror}; "
                       "give the node the same writable datasets folder as the driver") from None
    return written
