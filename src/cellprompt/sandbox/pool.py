"""`SandboxPool`: sandboxes started ahead of time, so a trial gets a ready one at once.

A sandbox handed out is never taken back: agent code may have left anything in
it, so the caller closes it and the pool starts a replacement in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from cellprompt.errors import SandboxError
from cellprompt.sandbox.api import open_sandbox
from cellprompt.sandbox.client import HttpSandbox

log = logging.getLogger(__name__)


class SandboxPool:
    """Keeps `size` ready sandboxes (kernel up) opened with `open_sandbox(**open_kwargs)`."""

    def __init__(self, size: int, **open_kwargs: Any) -> None:
        if size < 1:
            raise SandboxError("a sandbox pool needs size >= 1")
        self.size = size
        self.open_kwargs = {**open_kwargs, "wait_kernel": True}
        self._ready: deque[HttpSandbox] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._refill, name="cellprompt-pool", daemon=True)
        self._thread.start()

    def _refill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
            try:
                sandbox = open_sandbox(**self.open_kwargs)
            except BaseException as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if self._closed:
                    sandbox.close()
                    return
                self._ready.append(sandbox)
                self._cond.notify_all()

    def acquire(self, timeout: float | None = 120.0) -> HttpSandbox:
        """A fresh, ready sandbox (a context manager); close it when the trial ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxError("the sandbox pool is closed")
                while self._ready:
                    sandbox = self._ready.popleft()
                    self._cond.notify_all()
                    if sandbox.alive():
                        return sandbox
                    sandbox.close()
                if self._error is not None:
                    raise SandboxError(f"the sandbox pool cannot start sandboxes: {self._error}")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SandboxError(f"no sandbox became ready within {timeout:.0f} s")
                self._cond.wait(left)

    def close(self) -> None:
        """Stop the refill and every sandbox not handed out; handed-out ones stay theirs."""
        with self._cond:
            self._closed = True
            idle = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        for sandbox in idle:
            try:
                sandbox.close()
            except Exception:  # closing the rest matters more
                log.debug("closing idle sandbox %s failed", sandbox.id, exc_info=True)
        self._thread.join(timeout=120)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
