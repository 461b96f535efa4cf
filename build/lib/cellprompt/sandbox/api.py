"""`open_sandbox`: the one call that turns backend + limits + datasets into a ready sandbox."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from cellprompt.config import get_settings
from cellprompt.errors import SandboxError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Backend, Mount, SandboxSpec
from cellprompt.sandbox.client import HttpSandbox
from cellprompt.sandbox.registry import get_backend

DatasetRef = str | os.PathLike[str] | Mount

_swept: set[str] = set()
_sweep_lock = threading.Lock()


def _mounts(datasets: Sequence[DatasetRef]) -> list[Mount]:
    mounts: list[Mount] = []
    for ref in datasets:
        mount = ref if isinstance(ref, Mount) else Mount(Path(ref), Path(ref).name)
        if not mount.source.exists():
            raise SandboxError(f"dataset {mount.source} does not exist: check the path")
        if "/" in mount.name or mount.name in ("", ".", ".."):
            raise SandboxError(f"dataset name {mount.name!r} is not a plain file name")
        mounts.append(mount)
    if len({m.name for m in mounts}) != len(mounts):
        raise SandboxError("two datasets share a file name; give them distinct names")
    return mounts


def _sweep_once(backend: Backend) -> None:
    """Stale sandboxes of crashed processes are removed once per process and backend."""
    with _sweep_lock:
        if backend.name in _swept:
            return
        _swept.add(backend.name)
    backend.cleanup_stale()


def open_sandbox(backend: str | None = None, datasets: Sequence[DatasetRef] = (), *,
                 memory: str | None = None, cpus: float | None = None, pids: int | None = None,
                 unsafe: bool = False, tcp: bool = False, detached: bool = False,
                 wait_kernel: bool = False) -> HttpSandbox:
    """Launch a fresh sandbox; use it as a context manager so it is always stopped.

    Limits default to the settings (`CELLPROMPT_SANDBOX_MEMORY` etc.). `wait_kernel`
    also waits for the kernel (not just the service) to be up, as a warm pool wants.
    """
    settings = get_settings()
    chosen = get_backend(backend or settings.sandbox_backend, unsafe=unsafe)
    chosen.check()
    _sweep_once(chosen)
    spec = SandboxSpec(datasets=_mounts(datasets), memory=memory or settings.sandbox_memory,
                       cpus=cpus if cpus is not None else settings.sandbox_cpus,
                       pids=pids if pids is not None else settings.sandbox_pids,
                       tcp=tcp, detached=detached)
    launched = chosen.launch(spec, state.new_sandbox_id())
    sandbox = HttpSandbox(launched, chosen.name, owned=not detached)
    if wait_kernel:
        try:
            sandbox.wait_ready()
        except BaseException:
            sandbox.close()
            launched.stop()
            raise
    return sandbox
