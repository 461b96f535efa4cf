"""Warm sandboxes for trials, started ahead in the order the trials will ask for them.

A trial's sandbox must already hold that trial's datasets, and in a suite nearly
every task has its own agent copy, so a pool per dataset would start cold for
each task. Instead the runner tells this provider the datasets of the upcoming
trials, and it keeps `lookahead` sandboxes launching ahead of them. A sandbox is
handed out once and closed after its trial, never reused.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress

from cellprompt.sandbox.base import Mount, Sandbox

log = logging.getLogger(__name__)

Key = tuple[str, tuple[Mount, ...]]


def _open(key: Key) -> Sandbox:
    from cellprompt.sandbox import open_sandbox

    backend, mounts = key
    return open_sandbox(backend=backend, datasets=list(mounts), wait_kernel=True)


class PrelaunchedSandboxes:
    """A `SandboxProvider` that launches the next trials' sandboxes while the current ones run."""

    def __init__(self, upcoming: Iterable[Key], lookahead: int = 1) -> None:
        self.lookahead = max(1, lookahead)
        self._upcoming: deque[Key] = deque(upcoming)
        self._ready: dict[Key, deque[Future[Sandbox]]] = defaultdict(deque)
        self._waiting = 0  # launched (or launching) and not yet handed out
        self._lock = threading.Lock()
        self._closed = False
        self._launcher = ThreadPoolExecutor(max_workers=self.lookahead, thread_name_prefix="prelaunch")
        with self._lock:
            self._fill()

    def _fill(self) -> None:
        while not self._closed and self._upcoming and self._waiting < self.lookahead:
            key = self._upcoming.popleft()
            self._ready[key].append(self._launcher.submit(_open, key))
            self._waiting += 1

    def _take(self, key: Key) -> Future[Sandbox] | None:
        with self._lock:
            queue = self._ready.get(key)
            if queue:
                self._waiting -= 1
                future = queue.popleft()
            else:  # not foreseen (e.g. a retry): drop it from the plan, launch it now
                with suppress(ValueError):
                    self._upcoming.remove(key)
                future = None
            self._fill()
            return future

    @contextmanager
    def __call__(self, backend: str, mounts: list[Mount]) -> Iterator[Sandbox]:
        key = (backend, tuple(mounts))
        future = self._take(key)
        sandbox = future.result() if future is not None else _open(key)
        try:
            yield sandbox
        finally:
            sandbox.close()

    def close(self) -> None:
        """Stop every sandbox launched and not handed out."""
        with self._lock:
            self._closed = True
            futures = [f for queue in self._ready.values() for f in queue]
            self._ready.clear()
        for future in futures:
            try:
                future.result().close()
            except Exception:  # a launch that failed, or a sandbox already gone
                log.debug("closing a prelaunched sandbox failed", exc_info=True)
        self._launcher.shutdown(wait=True)
