"""`ScriptedSandbox`: an in-memory `Sandbox` whose cells a Python function answers.

As httpx ships `MockTransport`, the library ships this so that code *about* the
conversation — agent loops, runners, graders of written files, a user's own agent —
can be tested without bubblewrap, Docker or a kernel. It runs no code and isolates
nothing: the handler decides what each cell "printed". The workspace is a dict of
paths to bytes with the same path rules as a real sandbox.

    def handler(code: str) -> str:
        return "n_cells: 700" if "n_obs" in code else ""

    run(specs, store, provider=ScriptedSandbox.provider(handler))
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

from cellprompt.errors import SandboxDiedError
from cellprompt.sandbox.base import ExecutionResult, Mount, workspace_relative

Handler = Callable[[str], "ExecutionResult | str"]

_ids = itertools.count(1)


def _printed(text: str) -> ExecutionResult:
    outputs = [{"type": "stream", "name": "stdout", "text": text}] if text else []
    return ExecutionResult(final_status="ok", outputs=outputs)


class ScriptedSandbox:
    """A `Sandbox` (backend `scripted`) answering each cell with `handler(code)`.

    A handler returns an `ExecutionResult`, or a string taken as the cell's stdout; by
    default every cell succeeds silently. What ran is kept in `executed`, in order.
    """

    backend = "scripted"

    def __init__(self, handler: Handler | None = None, *,
                 files: Mapping[str, bytes] | None = None) -> None:
        self.id = f"scripted-{next(_ids)}"
        self.handler: Handler = handler or (lambda code: "")
        self.files: dict[str, bytes] = {workspace_relative(k): v for k, v in (files or {}).items()}
        self.executed: list[str] = []
        self.restarts = 0
        self.interrupts = 0
        self.closed = False
        self._lock = threading.Lock()  # cells run one at a time, as in a kernel

    @classmethod
    def provider(cls, handler: Handler | None = None
                 ) -> Callable[[str, list[Mount]], AbstractContextManager[ScriptedSandbox]]:
        """A runner `SandboxProvider` giving every trial a new scripted sandbox."""
        return lambda backend, mounts: cls(handler)

    def _usable(self) -> None:
        if self.closed:
            raise SandboxDiedError(f"sandbox {self.id} is closed")

    def execute(self, code: str, timeout: float = 60) -> ExecutionResult:
        self._usable()
        with self._lock:
            started = time.monotonic()
            self.executed.append(code)
            reply = self.handler(code)
            result = _printed(reply) if isinstance(reply, str) else reply
            return result.model_copy(update={"execution_count": len(self.executed),
                                             "duration_s": max(time.monotonic() - started, 1e-6)})

    def interrupt(self) -> None:
        self._usable()
        self.interrupts += 1

    def restart(self) -> None:
        self._usable()
        self.restarts += 1

    def read_file(self, path: str) -> bytes:
        self._usable()
        key = workspace_relative(path)
        if key not in self.files:
            raise FileNotFoundError(f"{path} is not in the sandbox's /workspace")
        return self.files[key]

    def write_file(self, path: str, data: bytes) -> None:
        self._usable()
        self.files[workspace_relative(path)] = bytes(data)

    def export_workspace(self, dest: Path, max_bytes: int = 50 << 20) -> list[str]:
        """The files into `dest`, smallest first, until `max_bytes`; the names left out."""
        self._usable()
        skipped, used = [], 0
        for name, data in sorted(self.files.items(), key=lambda item: (len(item[1]), item[0])):
            if used + len(data) > max_bytes:
                skipped.append(name)
                continue
            used += len(data)
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(data)
        dest.mkdir(parents=True, exist_ok=True)
        return skipped

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> ScriptedSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
