"""`SandboxPool`: sandboxes launched ahead of the callers that will ask for them.

Starting a sandbox costs seconds (a namespace or container, then a kernel), so a
caller should find one ready. One pool serves both uses:

* of one kind: `SandboxPool(2, backend="bwrap", memory="1g")` keeps two ready and
  starts a replacement for each one taken (a server handing out sandboxes);
* planned: `SandboxPool(4, plan=[{"backend": ..., "datasets": [...]}, ...])` is told
  the sandboxes of the upcoming trials in order and keeps four launching ahead. A
  suite gives nearly every task its own agent copy of the data, so a pool of one
  kind would start cold for each task; an acquisition the plan did not foresee (a
  retry) starts at once and is dropped from the plan.

A sandbox handed out is never taken back: agent code may have left anything in it,
so the caller closes it (it is a context manager).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import suppress
from typing import Any

from cellprompt.errors import CellpromptError, SandboxError
from cellprompt.sandbox.api import open_sandbox
from cellprompt.sandbox.base import Mount
from cellprompt.sandbox.client import HttpSandbox

log = logging.getLogger(__name__)

Key = tuple[tuple[str, Any], ...]


def _key(kwargs: Mapping[str, Any]) -> Key:
    """`open_sandbox` arguments as a hashable key (lists of mounts become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


def _open(key: Key) -> HttpSandbox:
    kwargs: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in key}
    return open_sandbox(**kwargs)


def _close_quietly(future: Future[HttpSandbox]) -> None:
    try:
        future.result().close()
    except Exception:  # a launch that failed, or a sandbox already gone
        log.debug("closing an unclaimed sandbox failed", exc_info=True)


class SandboxPool:
    """Sandboxes opened with `open_sandbox(**open_kwargs, **planned)`, `size` started ahead."""

    def __init__(self, size: int = 1, *, plan: Iterable[Mapping[str, Any]] | None = None,
                 **open_kwargs: Any) -> None:
        if size < 1:
            raise SandboxError("a sandbox pool needs size >= 1")
        self.size = size
        self.open_kwargs = {**open_kwargs, "wait_kernel": True}
        self._endless = plan is None  # of one kind: refill for ever
        self._upcoming: deque[Key] = deque(
            () if plan is None else (_key({**self.open_kwargs, **item}) for item in plan))
        self._launched: dict[Key, deque[Future[HttpSandbox]]] = defaultdict(deque)
        self._waiting = 0  # launched (or launching) and not yet handed out
        self._error: BaseException | None = None  # of one kind: a failed start stops refills
        self._lock = threading.RLock()  # a done callback may run inside `_fill`
        self._closed = False
        self._launcher = ThreadPoolExecutor(max_workers=size, thread_name_prefix="cellprompt-pool")
        with self._lock:
            self._fill()

    def _next(self) -> Key | None:
        if self._endless:
            return None if self._error is not None else _key(self.open_kwargs)
        return self._upcoming.popleft() if self._upcoming else None

    def _fill(self) -> None:
        while not self._closed and self._waiting < self.size and (key := self._next()) is not None:
            future = self._launcher.submit(_open, key)
            future.add_done_callback(self._note_failure)
            self._launched[key].append(future)
            self._waiting += 1

    def _note_failure(self, future: Future[HttpSandbox]) -> None:
        if self._endless and not future.cancelled() and future.exception() is not None:
            with self._lock:
                self._error = future.exception()

    def _take(self, key: Key) -> Future[HttpSandbox] | None:
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox pool is closed")
            queue = self._launched.get(key)
            future = queue.popleft() if queue else None
            if future is not None:
                self._waiting -= 1
            elif not self._endless:  # not foreseen: drop it from the plan, start it now
                with suppress(ValueError):
                    self._upcoming.remove(key)
            self._fill()
            return future

    def acquire(self, timeout: float | None = 120.0, **kwargs: Any) -> HttpSandbox:
        """A fresh, ready sandbox (`kwargs` over the pool's own); close it when done."""
        merged = {**self.open_kwargs, **kwargs}
        future = self._take(_key(merged))
        if future is None:
            if self._endless and self._error is not None:
                raise SandboxError(f"the sandbox pool cannot start sandboxes: {self._error}")
            return open_sandbox(**merged)
        try:
            sandbox = future.result(timeout)
        except FutureTimeout:
            future.add_done_callback(_close_quietly)  # whoever finishes it, nobody waits
            raise SandboxError(f"no sandbox became ready within {timeout:.0f} s") from None
        except CellpromptError:
            raise
        except Exception as exc:
            raise SandboxError(f"the sandbox pool cannot start sandboxes: {exc}") from exc
        if sandbox.alive():
            return sandbox
        log.info("a pooled sandbox %s died before use; starting another", sandbox.id)
        sandbox.close()
        return open_sandbox(**merged)

    def __call__(self, backend: str, mounts: list[Mount]) -> HttpSandbox:
        """The runner's `SandboxProvider`: a sandbox for `backend` holding `mounts`."""
        return self.acquire(None, backend=backend, datasets=list(mounts))  # starts time out alone

    def ready(self) -> int:
        """How many sandboxes have started and wait to be handed out."""
        with self._lock:
            return sum(f.done() and f.exception() is None
                       for queue in self._launched.values() for f in queue)

    def close(self) -> None:
        """Stop every sandbox launched and not handed out; handed-out ones stay their caller's."""
        with self._lock:
            self._closed = True
            futures = [f for queue in self._launched.values() for f in queue]
            self._launched.clear()
        for future in futures:
            _close_quietly(future)
        self._launcher.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
