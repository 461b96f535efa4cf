"""What the local and bwrap backends share: a service process on the host, a folder, a record.

Both launch `python -m service` (directly, or inside bubblewrap) as one host
process, wait until `/status` answers on its socket, and on stop kill its
process group, remove its cgroups and delete its folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from cellprompt.errors import SandboxError
from cellprompt.sandbox import spawn, state
from cellprompt.sandbox.base import Endpoint, Launched
from cellprompt.sandbox.limits import remove_cgroups
from cellprompt.sandbox.transport import ServiceClient, TransportError, peer_pid

__all__ = ["ProcessLaunched", "cleanup_stale_processes", "peer_pid",
           "start_process", "terminate_pid", "write_token"]

START_TIMEOUT_S = 60.0
SERVICE_PACKAGE_PARENT = Path(__file__).resolve().parent  # holds the `service` package


def write_token(run_dir: Path) -> str:
    """A fresh per-sandbox token in a 0600 file the service deletes once read."""
    token = secrets.token_urlsafe(32)
    fd = os.open(run_dir / "token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate_pid(pid: int, started: float | None, group: bool = True) -> None:
    """SIGKILL the process (and its group), unless the pid now belongs to someone else."""
    if not state.pid_alive(pid, started):
        return
    with contextlib.suppress(OSError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def attach_process(record: state.SandboxRecord) -> ProcessLaunched:
    """A recorded host-process sandbox (local or bwrap), reached through its recorded endpoint."""
    endpoint = Endpoint(token=record.token or "", uds=Path(record.uds) if record.uds else None,
                        host=record.host, port=record.port, peer_pid=record.peer_pid)
    return ProcessLaunched(record, endpoint)


class ProcessLaunched(Launched):
    """A kernel service running as one host process (plain or under bubblewrap)."""

    def __init__(self, record: state.SandboxRecord, endpoint: Endpoint,
                 proc: subprocess.Popen[bytes] | None = None) -> None:
        self.sandbox_id = record.sandbox_id
        self.endpoint = endpoint
        self.record = record
        self._proc = proc
        self._stopped = False

    @property
    def log_path(self) -> Path:
        return state.sandbox_dir(self.sandbox_id) / "service.log"

    def alive(self) -> bool:
        if self._stopped:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        return state.pid_alive(self.record.pid, self.record.pid_started)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.record.pid is not None:
            terminate_pid(self.record.pid, self.record.pid_started)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        remove_cgroups(self.record.cgroups)
        state.remove_dir(self.sandbox_id)

    def _pin_peer(self) -> None:
        """Record which process listens, now that it serves and before any agent code ran.

        It must be the process we spawned or one of its descendants (bwrap forks the service
        inside); every later connection must come from exactly that pid.
        """
        if self.endpoint.uds is None:
            return
        pid = peer_pid(self.endpoint.uds)
        try:
            lineage = [pid, *(p.pid for p in psutil.Process(pid).parents())]
        except psutil.Error:
            lineage = []
        if self.record.pid not in lineage:
            self.stop()
            raise SandboxError(f"sandbox {self.sandbox_id}: its socket is served by pid {pid}, "
                               "not by the service we launched; refusing it")
        self.endpoint.peer_pid = self.record.peer_pid = pid
        state.write_record(self.record)

    def oom_kills(self) -> int | None:
        return oom_kill_count(self.record.cgroups)

    def logs(self, lines: int = 100) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once `/status` answers; fail with the service log when it never does."""
        deadline = time.monotonic() + timeout
        with ServiceClient(self.endpoint) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    tail = self.logs(15)
                    self.stop()
                    raise SandboxError(f"sandbox {self.sandbox_id} exited while starting: "
                                       f"{tail.strip()[-600:] or 'no log'}")
                if self.endpoint.uds is None or self.endpoint.uds.exists():
                    with contextlib.suppress(TransportError):
                        if client.request("GET", "/status", timeout=2.0).status == 200:
                            self._pin_peer()
                            return
                time.sleep(0.005)
        self.stop()
        raise SandboxError(f"sandbox {self.sandbox_id} did not answer within {timeout:.0f} s; "
                           "see `cellprompt sandbox logs`")


def start_process(argv: list[str], *, record: state.SandboxRecord, endpoint: Endpoint,
                  env: dict[str, str], cwd: Path, pass_fds: tuple[int, ...] = (),
                  finish: Callable[[ProcessLaunched], None] | None = None) -> ProcessLaunched:
    """Spawn `argv` with its log in the sandbox folder, record it, wait until it serves.

    Once it serves, the listening process is pinned (`Endpoint.peer_pid`).
    """
    base = state.sandbox_dir(record.sandbox_id)
    with open(base / "service.log", "ab") as log:
        proc = spawn.popen(args=argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                           close_fds=True, pass_fds=pass_fds)
    record.pid = proc.pid
    record.pid_started = state.process_start_time(proc.pid)
    state.write_record(record)
    launched = ProcessLaunched(record, endpoint, proc)
    if finish is not None:
        finish(launched)
    launched.wait_until_serving()
    return launched


def oom_kill_count(cgroups: list[str]) -> int | None:
    """Processes the sandbox's memory cgroup has OOM-killed (v2 memory.events, v1 oom_control)."""
    for raw in cgroups:
        for name in ("memory.events", "memory.oom_control"):
            with contextlib.suppress(OSError, ValueError):
                for line in (Path(raw) / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


def cleanup_stale_processes(backend: str) -> list[str]:
    """Stop and remove every recorded sandbox of `backend` whose launcher is gone."""
    removed = []
    for rec in state.all_records():
        if rec.backend != backend or not state.is_stale(rec):
            continue
        if rec.pid is not None:
            terminate_pid(rec.pid, rec.pid_started)
        remove_cgroups(rec.cgroups)
        state.remove_dir(rec.sandbox_id)
        removed.append(rec.sandbox_id)
    return removed
