"""Find, attach to, read and stop sandboxes by id: what `cellprompt sandbox status/stop/...` use."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from cellprompt.errors import SandboxError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Endpoint, Launched
from cellprompt.sandbox.client import HttpSandbox
from cellprompt.sandbox.limits import remove_cgroups
from cellprompt.sandbox.process import ProcessLaunched, terminate_pid


@dataclass
class SandboxInfo:
    """One recorded sandbox and whether it still runs."""

    record: state.SandboxRecord
    alive: bool

    @property
    def sandbox_id(self) -> str:
        return self.record.sandbox_id


def _launched(rec: state.SandboxRecord) -> Launched:
    if rec.backend == "docker":
        from cellprompt.sandbox.docker_backend import DockerBackend

        return DockerBackend().attach(rec.sandbox_id)
    endpoint = Endpoint(token=rec.token or "", uds=Path(rec.uds) if rec.uds else None,
                        host=rec.host, port=rec.port, peer_pid=rec.peer_pid)
    return ProcessLaunched(rec, endpoint)


def _record(sandbox_id: str) -> state.SandboxRecord:
    rec = state.read_record(sandbox_id)
    if rec is None:
        raise SandboxError(f"no sandbox {sandbox_id}; `cellprompt sandbox status` lists them")
    return rec


def list_sandboxes() -> list[SandboxInfo]:
    infos = []
    for rec in state.all_records():
        if rec.backend == "docker":
            alive = not state.is_stale(rec)
            with contextlib.suppress(Exception):
                alive = _launched(rec).alive()
        else:
            alive = state.pid_alive(rec.pid, rec.pid_started)
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
    rec = _record(sandbox_id)
    if rec.backend == "docker":
        _launched(rec).stop()
        return
    if rec.pid is not None:
        terminate_pid(rec.pid, rec.pid_started)
    remove_cgroups(rec.cgroups)
    state.remove_dir(sandbox_id)


def stop_all() -> list[str]:
    """Every sandbox with a record here, and every cellprompt container the engine still runs
    (also those whose record folder is gone)."""
    stopped = []
    for rec in state.all_records():
        with contextlib.suppress(SandboxError):
            stop(rec.sandbox_id)
            stopped.append(rec.sandbox_id)
    try:
        from cellprompt.sandbox.docker_backend import DockerBackend

        removed = DockerBackend().cleanup_stale(include_live=True)
    except (ImportError, SandboxError):
        return stopped  # no docker SDK or no engine: nothing of ours can be running there
    return stopped + [s for s in removed if s not in stopped]
