"""On-disk records of running sandboxes, so detached ones and crash leftovers can be found.

Each sandbox owns one folder under `Settings.sandbox_state_dir()`:
`record.json` (0600), `run/` (0700: the Unix socket and the one-shot token file),
`workspace/` (bound at /workspace) and `service.log`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

import psutil
from pydantic import Field

from cellprompt.config import get_settings
from cellprompt.records.versioned import Versioned

SCHEMA_VERSION = 1
RECORD = "record.json"


class SandboxRecord(Versioned):
    """What `cellprompt sandbox status/stop/logs/exec` and stale cleanup need to know."""

    SCHEMA_VERSION = SCHEMA_VERSION
    schema_version: int = SCHEMA_VERSION
    sandbox_id: str
    backend: str
    pid: int | None = None  # the host process holding the sandbox (bwrap, service, ...)
    pid_started: float | None = None  # its start time: tells a live pid from a reused one
    parent_pid: int | None = None  # the process that launched it; None when detached
    # who is launching it, recorded before anything starts: a sandbox whose pid is not known
    # yet belongs to a live launcher, never to another process's stale sweep
    launcher_pid: int = Field(default_factory=os.getpid)
    launcher_started: float | None = Field(default_factory=lambda: _own_start_time())
    peer_pid: int | None = None  # the listener every connection must come from (Endpoint)
    detached: bool = False
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    uds: str | None = None
    host: str | None = None
    port: int | None = None
    token: str | None = None  # kept only for detached sandboxes (mode 0600 file)
    cgroups: list[str] = Field(default_factory=list)
    container: str | None = None  # for engines that name their sandboxes (docker)
    memory: str | None = None
    cpus: float | None = None


def state_root() -> Path:
    return get_settings().sandbox_state_dir()


def new_sandbox_id() -> str:
    return "cp-" + secrets.token_hex(5)


def sandbox_dir(sandbox_id: str) -> Path:
    return state_root() / sandbox_id


def make_dirs(sandbox_id: str) -> Path:
    """A fresh folder for one sandbox; `run/` only the host user may enter."""
    base = sandbox_dir(sandbox_id)
    base.mkdir(mode=0o700)
    (base / "run").mkdir(mode=0o700)
    (base / "workspace").mkdir(mode=0o755)
    return base


def stage_dir(sandbox_id: str) -> Path:
    """A folder the sandbox's unprivileged host uid may traverse (not list), for staged binds.

    Only the sandbox folder is opened to traversal for it; `run/` (socket) stays 0700.
    """
    base = sandbox_dir(sandbox_id)
    base.chmod(0o711)
    stage = base / "stage"
    stage.mkdir(mode=0o711)
    return stage


def write_record(record: SandboxRecord) -> None:
    path = sandbox_dir(record.sandbox_id) / RECORD
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(record.model_dump_json(indent=2))
    tmp.replace(path)


def read_record(sandbox_id: str) -> SandboxRecord | None:
    path = sandbox_dir(sandbox_id) / RECORD
    try:
        return SandboxRecord.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def all_records() -> list[SandboxRecord]:
    records = []
    for entry in sorted(state_root().iterdir()):
        if entry.is_dir() and (rec := read_record(entry.name)) is not None:
            records.append(rec)
    return records


def _own_start_time() -> float | None:
    return process_start_time(os.getpid())


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether `pid` runs and is still the process we recorded (not a reused number)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def is_stale(record: SandboxRecord) -> bool:
    """Left behind: its holder is gone, or its non-detached launcher died.

    A record without a pid is a launch in progress: stale only once its launcher
    (pid and start time, so a reused pid does not count) is gone.
    """
    launcher_alive = pid_alive(record.launcher_pid, record.launcher_started)
    if record.container is not None:
        return not record.detached and not launcher_alive
    if record.pid is None:
        return not launcher_alive
    if not pid_alive(record.pid, record.pid_started):
        return True
    return not record.detached and not launcher_alive


def remove_dir(sandbox_id: str) -> None:
    path = sandbox_dir(sandbox_id)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path, ignore_errors=True)
