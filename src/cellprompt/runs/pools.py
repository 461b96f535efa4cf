"""Warm sandboxes for trials: one `SandboxPool` per (backend, datasets), started on first use.

A trial's sandbox must already hold its datasets, so pools are keyed by the
mounts; while one trial runs, its pool starts the next trial's sandbox.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from cellprompt.sandbox.base import Mount, Sandbox


class PooledSandboxes:
    """A `SandboxProvider` backed by warm pools; `close()` stops every idle sandbox."""

    def __init__(self, size: int = 1) -> None:
        self.size = max(1, size)
        self._pools: dict[tuple[str, tuple[Mount, ...]], object] = {}
        self._lock = threading.Lock()

    def _pool(self, backend: str, mounts: list[Mount]):  # -> SandboxPool
        from cellprompt.sandbox import SandboxPool

        key = (backend, tuple(mounts))
        with self._lock:
            if key not in self._pools:
                self._pools[key] = SandboxPool(self.size, backend=backend, datasets=list(mounts))
            return self._pools[key]

    @contextmanager
    def __call__(self, backend: str, mounts: list[Mount]) -> Iterator[Sandbox]:
        sandbox = self._pool(backend, mounts).acquire()  # type: ignore[attr-defined]
        try:
            yield sandbox
        finally:
            sandbox.close()

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            with suppress(Exception):
                pool.close()  # type: ignore[attr-defined]
