"""Find, attach to, read and stop sandboxes by id: what `cellprompt sandbox status/stop/...` use.

Each recorded sandbox is reached through its own backend's `attach`, so nothing here
knows how a backend keeps its sandboxes (a host process, a container).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cellprompt.errors import SandboxError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Launched
from cellprompt.sandbox.client import HttpSandbox
from cellprompt.sandbox.registry import get_backend

log = logging.getLogger(__name__)


@dataclass
class SandboxInfo:
    """One recorded sandbox and whether it still runs."""

    record: state.SandboxRecord
    alive: bool

    @property
    def sandbox_id(self) -> str:
        return self.record.sandbox_id


def _launched(rec: state.SandboxRecord) -> Launched:
    return get_backend(rec.backend, unsafe=True).attach(rec)  # attaching launches nothing


def _record(sandbox_id: str) -> state.SandboxRecord:
    rec = state.read_record(sandbox_id)
    if rec is None:
        raise SandboxError(f"no sandbox {sandbox_id}; `cellprompt sandbox status` lists them")
    return rec


def list_sandboxes() -> list[SandboxInfo]:
    infos = []
    for rec in state.all_records():
        try:
            alive = _launched(rec).alive()
        except Exception:  # its engine is unreachable (docker): judge by the record alone
            log.debug("cannot reach sandbox %s", rec.sandbox_id, exc_info=True)
            alive = not state.is_stale(rec)
        infos.append(SandboxInfo(rec, alive))
    return infos


def attach(sandbox_id: str) -> HttpSandbox:
    """A client for a running detached sandbox; closing it does not stop the sandbox."""
    rec = _record(sandbox_id)
    if not rec.token:
        raise SandboxError(f"sandbox {sandbox_id} belongs to another process (not detached); "
                           "start one with `cellprompt sandbox start`")
    launched = _launched(rec)
    if not launched.alive():
        raise SandboxError(f"sandbox {sandbox_id} is not running; "
                           f"`cellprompt sandbox stop {sandbox_id}` clears it")
    return HttpSandbox(launched, rec.backend, owned=False)


def logs(sandbox_id: str, lines: int = 100) -> str:
    return _launched(_record(sandbox_id)).logs(lines)


def stop(sandbox_id: str) -> None:
    _launched(_record(sandbox_id)).stop()


def stop_all() -> list[str]:
    """Every sandbox with a record here, and every cellprompt container the engine still runs
    (also those whose record folder is gone)."""
    stopped = []
    for rec in state.all_records():
        try:
            stop(rec.sandbox_id)
        except SandboxError:
            log.debug("cannot stop sandbox %s", rec.sandbox_id, exc_info=True)
        else:
            stopped.append(rec.sandbox_id)
    try:
        from cellprompt.sandbox.docker_backend import DockerBackend

        removed = DockerBackend().cleanup_stale(include_live=True)
    except (ImportError, SandboxError):
        return stopped  # no docker SDK or no engine: nothing of ours can be running there
    return stopped + [s for s in removed if s not in stopped]
