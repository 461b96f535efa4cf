"""A running sandbox container: its name and labels, pinning its service, liveness, removal.

Split from `docker_backend.py` (which decides how a container is made and finds stale
ones) because this is what every later call on a sandbox goes through: `DockerLaunched`
pins the service's pid on the socket at start (`pin_service`), answers `alive`/`logs`/
`oom_kills`, and removes the container within bounded engine calls, finishing in the
background when the engine is slow, so `stop()` never holds its caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from cellprompt.errors import SandboxError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Endpoint, Launched, SandboxSpec
from cellprompt.sandbox.docker_image import LABEL
from cellprompt.sandbox.process import oom_kill_count, peer_pid
from cellprompt.sandbox.transport import ServiceClient, TransportError
from cellprompt.version import __version__

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from docker import DockerClient

START_TIMEOUT_S = 120.0
# Engine calls that end a sandbox: each bounded, so `stop()` returns within 10 s in all.
KILL_TIMEOUT_S = 3
REMOVE_TIMEOUT_S = 5
CGROUP_ROOT = Path("/sys/fs/cgroup")


def container_name(sandbox_id: str) -> str:
    return f"cellprompt-{sandbox_id}"


def container_labels(sandbox_id: str, spec: SandboxSpec, base: Path) -> dict[str, str]:
    pid = os.getpid()
    return {
        f"{LABEL}.sandbox": sandbox_id,
        f"{LABEL}.version": __version__,
        f"{LABEL}.host": socket.gethostname(),
        f"{LABEL}.parent-pid": "" if spec.detached else str(pid),
        f"{LABEL}.parent-started": "" if spec.detached else str(state.process_start_time(pid)),
        f"{LABEL}.detached": "1" if spec.detached else "0",
        f"{LABEL}.state-dir": str(base),
    }


def _quick(client: DockerClient, timeout: float) -> DockerClient:
    """A client of the same engine (as `connect` found it) giving up after `timeout` s a call."""
    import docker

    return docker.from_env(timeout=int(timeout), version=client.api.api_version)


def remove_container(client: DockerClient, name: str, base: Path | None) -> None:
    """Kill and remove the container (running or not) and its host folder; ignore what is gone.

    SIGKILL first (a stopped or wedged service ignores anything gentler), each engine call
    bounded: when the engine does not answer in time the removal is finished in the
    background, so the caller is never held much longer than `KILL_TIMEOUT_S +
    REMOVE_TIMEOUT_S`.
    """
    from docker.errors import APIError, NotFound

    with contextlib.closing(_quick(client, KILL_TIMEOUT_S)) as quick:
        try:
            quick.api.kill(name)
        except Exception:  # not running, gone, slow: the removal decides
            log.debug("killing container %s failed", name, exc_info=True)
    with contextlib.closing(_quick(client, REMOVE_TIMEOUT_S)) as quick:
        try:
            quick.api.remove_container(name, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if "already in progress" not in str(exc):
                raise
        except Exception:  # no answer in time: finish later, never hold the caller
            log.debug("removing container %s: finishing in the background", name, exc_info=True)
            threading.Thread(target=_remove_quietly, args=(client, name, None), daemon=True,
                             name=f"remove-{name}").start()
    if base is not None and base.parent == state.state_root():
        state.remove_dir(base.name)


def _remove_quietly(client: DockerClient, name: str, base: Path | None) -> None:
    """For finalisers: at interpreter exit the engine may be gone; nothing to report to."""
    from docker.errors import NotFound

    try:
        with contextlib.suppress(NotFound):
            client.api.remove_container(name, force=True)
        if base is not None and base.parent == state.state_root():
            state.remove_dir(base.name)
    except Exception:
        log.debug("removing container %s failed", name, exc_info=True)


def _memory_cgroups(pid: int) -> list[str]:
    """The memory cgroup folder(s) of host process `pid` (v1 `memory` line, or v2 unified)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            rel = path.lstrip("/")
            if "memory" in controllers.split(","):
                found.append(str(CGROUP_ROOT / "memory" / rel))
            elif controllers == "":
                found += [str(CGROUP_ROOT / rel), str(CGROUP_ROOT / "unified" / rel)]
    return [f for f in found if Path(f).is_dir()]


class DockerLaunched(Launched):
    """A sandbox container, known by name (it may have vanished: then it is simply not alive)."""

    def __init__(self, client: DockerClient, name: str, sandbox_id: str,
                 endpoint: Endpoint, base: Path, detached: bool) -> None:
        self.sandbox_id = sandbox_id
        self.endpoint = endpoint
        self.container_name = name
        self._client = client
        self._base = base
        self._cgroups: list[str] | None = None  # found once: the container's never change
        # Garbage collection and interpreter exit remove a non-detached container too.
        self._finalizer = weakref.finalize(self, _remove_quietly, client, name, base)
        if detached:
            self._finalizer.detach()

    def alive(self) -> bool:
        from docker.errors import NotFound

        try:
            return bool(self._client.api.inspect_container(self.container_name)["State"]
                        ["Running"])
        except NotFound:
            return False

    def stop(self) -> None:
        self._finalizer.detach()
        remove_container(self._client, self.container_name, self._base)

    def logs(self, lines: int = 100) -> str:
        from docker.errors import NotFound

        try:
            return self._client.api.logs(self.container_name, tail=lines).decode(
                errors="replace")
        except NotFound:
            return ""

    def oom_kills(self) -> int | None:
        """`oom_kill` of the container's memory cgroup (v2 memory.events, v1 oom_control).

        The engine's own `OOMKilled` only covers the container's init; the kernel is a
        grandchild, so the cgroup's counter is what tells a real out-of-memory kill from
        agent code's own SIGKILL.
        """
        if self._cgroups is None:
            pid = self._init_pid()
            if pid is None:
                return None
            self._cgroups = _memory_cgroups(pid)
        return oom_kill_count(self._cgroups)

    def _init_pid(self) -> int | None:
        """The host pid of the container's init (docker-init), None when not running."""
        from docker.errors import NotFound

        try:
            pid = int(self._client.api.inspect_container(self.container_name)["State"]["Pid"])
        except (NotFound, KeyError, TypeError, ValueError):
            return None
        return pid or None

    def pin_service(self) -> None:
        """Record the service's host pid as the only peer the client may talk to.

        Called once the socket has answered `/status`, before any agent code ran. The
        listener must be a direct child of the container's init: the service is, while
        anything agent code starts descends from the kernel (the service is its
        subreaper). Raises `SandboxError` (and removes the container) otherwise.
        """
        sock = self.endpoint.uds
        assert sock is not None
        init = self._init_pid()
        try:
            pid = peer_pid(sock)
            parent = psutil.Process(pid).ppid() if pid > 0 else None
        except (OSError, psutil.Error):
            pid, parent = 0, None
        if init is None or parent != init:
            self.stop()
            raise SandboxError(f"docker sandbox {self.sandbox_id}: its socket is not served by "
                               f"the sandbox's service (listener pid {pid or 'unknown'}, "
                               f"container init {init}); the sandbox was removed")
        self.endpoint.peer_pid = pid
        if init is not None:
            self._cgroups = _memory_cgroups(init)
        rec = state.read_record(self.sandbox_id)
        if rec is not None:
            rec.peer_pid = pid
            state.write_record(rec)

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once `/status` answers and the service is pinned; fail with the container's
        log when it never does."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        sock = self.endpoint.uds
        assert sock is not None
        with ServiceClient(self.endpoint) as client:
            while time.monotonic() < deadline:
                if sock.exists():
                    with contextlib.suppress(TransportError):
                        if client.request("GET", "/status", timeout=2.0).status == 200:
                            self.pin_service()
                            return
                if time.monotonic() >= next_check:  # an engine round trip: not every spin
                    next_check = time.monotonic() + 0.25
                    if not self.alive():
                        tail = " | ".join(self.logs(8).strip().splitlines()[-4:])
                        self.stop()
                        raise SandboxError(f"docker sandbox {self.sandbox_id} exited while "
                                           f"starting: {tail[-500:] or 'no log'}")
                time.sleep(0.005)
        self.stop()
        raise SandboxError(f"docker sandbox {self.sandbox_id} did not answer within "
                           f"{timeout:.0f} s; see `cellprompt sandbox logs {self.sandbox_id}`")
