"""The `docker` backend: the kernel service in a locked-down container, one per sandbox.

For machines where bubblewrap cannot run (macOS, Windows, clusters without user
namespaces). The container has no network at all (`network_mode="none"`): the
host talks to the service through a Unix socket in a bind-mounted host folder,
so no port is published anywhere. Datasets are bind-mounted read-only (never
copied, so a 10 GB dataset costs nothing), the root filesystem is read-only,
every capability is dropped, no-new-privileges is set, and the seccomp filter of
`cellprompt.sandbox.seccomp` (no ptrace, keyrings, bpf, perf, namespaces,
mounts, modules, kexec, nor setuid/setgid bits) replaces Docker's default.

The host shares no folder with agent code but the socket's: `/workspace` and
`/tmp` are tmpfs mounts inside the container (nosuid, nodev, counted in its
memory limit; the workspace at most `sandbox_workspace_quota` and half the
memory, so a full disk is an ENOSPC for the agent, never for the host), and
files reach the host only through the service (`/files`, `/archive`). The
socket's folder must stay writable by the service, so agent code (same uid)
could put its own listener there: the host therefore pins the service at
launch (the SO_PEERCRED pid of the socket that first answers `/status` must be
a direct child of the container's init, which only the service is) and the
client refuses any other peer on every later connection (`Endpoint.peer_pid`).

A container outlives a crashed parent (no engine offers die-with-parent), so each
one carries labels naming its launcher; `cleanup_stale` removes those whose
launcher is gone, and every new run calls it. Removal kills first and uses
short engine timeouts, so `stop()` returns within seconds even when the service
inside is stopped or wedged.

The image (engine connection, build, version check) is `docker_image.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil

from cellprompt import __version__
from cellprompt.config import get_settings
from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Backend, Endpoint, Launched, SandboxSpec
from cellprompt.sandbox.docker_image import LABEL, connect, find_image
from cellprompt.sandbox.limits import parse_memory
from cellprompt.sandbox.process import http_client, oom_kill_count, peer_pid, write_token
from cellprompt.sandbox.seccomp import docker_profile
from cellprompt.sandbox.service.kernel_launcher import AGENT_NICE_ENV, AGENT_NPROC_ENV

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

START_TIMEOUT_S = 120.0
ORPHAN_GRACE_S = 300.0  # a detached sandbox's folder may precede its container by this much
RUN_IN = "/run/cellprompt"  # where the host's per-sandbox `run/` folder appears in the container
SERVICE_COMMAND = ["python", "-m", "service", "--uds", f"{RUN_IN}/kernel.sock",
                   "--token-file", f"{RUN_IN}/token", "--workspace", "/workspace",
                   "--scratch", "/tmp"]
# Engine calls that end a sandbox: each bounded, so `stop()` returns within 10 s in all.
KILL_TIMEOUT_S = 3
REMOVE_TIMEOUT_S = 5
CGROUP_ROOT = Path("/sys/fs/cgroup")


# -- containers -----------------------------------------------------------------------------

def container_name(sandbox_id: str) -> str:
    return f"cellprompt-{sandbox_id}"


def _labels(sandbox_id: str, spec: SandboxSpec, base: Path) -> dict[str, str]:
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


def _remove(client: DockerClient, name: str, base: Path | None) -> None:
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
        _remove(self._client, self.container_name, self._base)

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
        with http_client(self.endpoint, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if sock.exists():
                    with contextlib.suppress(httpx.TransportError):
                        if client.get("/status").status_code == 200:
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


def workspace_quota(memory: int) -> int:
    """Bytes `/workspace` may hold: the setting, and at most half the memory limit (the
    tmpfs is counted in it, so a full workspace still leaves the kernel room to run)."""
    return min(parse_memory(get_settings().sandbox_workspace_quota), memory // 2)


def tmpfs_mounts(memory: int, user: str) -> dict[str, str]:
    """`/workspace` (owned by the sandbox's user, capped) and `/tmp`, both in memory.

    Neither is a host folder: nothing agent code writes lands on the host's disk,
    and a setuid bit (denied by seccomp anyway) means nothing on nosuid mounts.
    """
    uid, gid = user.split(":")
    return {"/workspace": (f"rw,nosuid,nodev,exec,size={workspace_quota(memory)},"
                           f"uid={uid},gid={gid},mode=0755"),
            "/tmp": f"rw,nosuid,nodev,exec,size={memory},mode=1777"}


def container_env(spec: SandboxSpec) -> dict[str, str]:
    """Variables for the service and the kernel launcher.

    Agent code runs at nice 19 (the container has a CPU quota of its own, so this only
    keeps the service ahead of a fork bomb). No RLIMIT_NPROC (the variable is left empty):
    without a user namespace it would count every host process of the uid, not the
    sandbox's; the container's pids cgroup is the limit.
    """
    return {"LOKY_MAX_CPU_COUNT": str(max(1, int(spec.cpus))), AGENT_NICE_ENV: "19",
            AGENT_NPROC_ENV: ""}


def security_options() -> list[str]:
    """cellprompt's seccomp filter in place of Docker's default, and no-new-privileges."""
    return ["seccomp=" + json.dumps(docker_profile(), separators=(",", ":")),
            "no-new-privileges"]


def _readable_by(path: Path, user: str) -> bool:
    """Whether `uid:gid` may read `path` by its mode bits (the container has no capabilities)."""
    uid, gid = (int(x) for x in user.split(":"))
    st = path.resolve().stat()
    if st.st_uid == uid:
        return bool(st.st_mode & 0o400)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o040)
    return bool(st.st_mode & 0o004)


class DockerBackend(Backend):
    """Each sandbox a container with no network, read-only root, dropped capabilities."""

    name = "docker"

    def __init__(self, image: str | None = None) -> None:
        self._image_override = image
        self._client: DockerClient | None = None
        self._checked_image: Image | None = None

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = connect()
        return self._client

    def check(self) -> None:
        self._image()

    def _image(self) -> Image:
        """The checked image; looked up once per backend object (`check` then `launch`)."""
        if self._checked_image is None:
            if self._image_override is not None:
                from docker.errors import ImageNotFound

                try:
                    self._checked_image = self.client.images.get(self._image_override)
                except ImageNotFound:
                    raise SandboxUnavailableError(
                        f"docker image {self._image_override} is missing") from None
            else:
                self._checked_image = find_image(self.client)
        return self._checked_image

    def launch(self, spec: SandboxSpec, sandbox_id: str) -> DockerLaunched:
        if spec.tcp:
            raise SandboxUnavailableError(
                "the docker backend serves on a Unix socket only (its containers have no "
                "network); drop the TCP option or use --backend bwrap")
        image = self._image()
        base = state.make_dirs(sandbox_id)
        run = base / "run"
        token = write_token(run)
        user = self._user(image, run)
        unreadable = [m.source for m in spec.datasets if not _readable_by(m.source, user)]
        if unreadable:
            state.remove_dir(sandbox_id)
            raise SandboxError(f"dataset {unreadable[0]} is not readable by the docker sandbox's user "
                               f"(uid {user.split(':')[0]}): make it readable (chmod a+r {unreadable[0]})")
        name = container_name(sandbox_id)
        memory = parse_memory(spec.memory)
        volumes = {str(run): {"bind": RUN_IN, "mode": "rw"}}
        for mount in spec.datasets:
            volumes[str(mount.source.resolve())] = {"bind": f"/data/{mount.name}", "mode": "ro"}
        record = state.SandboxRecord(
            sandbox_id=sandbox_id, backend=self.name, container=name, detached=spec.detached,
            parent_pid=None if spec.detached else os.getpid(), uds=str(run / "kernel.sock"),
            token=token if spec.detached else None, memory=str(spec.memory), cpus=spec.cpus)
        state.write_record(record)
        from docker.errors import APIError

        try:
            self.client.containers.run(
                image.id, SERVICE_COMMAND, detach=True, name=name, hostname="sandbox", user=user,
                labels=_labels(sandbox_id, spec, base),
                network_mode="none", read_only=True,
                tmpfs=tmpfs_mounts(memory, user), volumes=volumes, working_dir="/opt/cellprompt",
                environment=container_env(spec),
                mem_limit=memory, memswap_limit=memory, nano_cpus=int(spec.cpus * 1e9),
                pids_limit=spec.pids, cap_drop=["ALL"], security_opt=security_options(),
                init=True, ipc_mode="private", log_config={"type": "json-file",
                                                            "config": {"max-size": "1m"}})
        except APIError as exc:
            _remove(self.client, name, base)
            raise SandboxError(f"docker could not start sandbox {sandbox_id}: "
                               f"{' '.join(str(exc.explanation or exc).split())}") from None
        launched = DockerLaunched(self.client, name, sandbox_id,
                                  Endpoint(token=token, uds=run / "kernel.sock"), base,
                                  spec.detached)
        launched.wait_until_serving()
        return launched

    def _user(self, image: Image, run: Path) -> str:
        """Who the service runs as, and the socket folder it may use.

        The image's unprivileged user, when we are root (we hand it the folder);
        else our own uid, so that we can use the socket it creates.
        """
        uid = os.getuid()
        if uid != 0:
            return f"{uid}:{os.getgid()}"
        sandbox_uid = int((image.labels or {}).get(f"{LABEL}.uid", "1000"))
        for path in (run, run / "token"):
            os.chown(path, sandbox_uid, sandbox_uid)
        return f"{sandbox_uid}:{sandbox_uid}"

    def containers(self) -> list[Container]:
        """Every cellprompt sandbox container of this engine, running or not."""
        return self.client.containers.list(all=True, filters={"label": f"{LABEL}.sandbox"})

    def cleanup_stale(self, include_live: bool = False) -> list[str]:
        """Remove containers whose launcher on this host is gone (all of them: `include_live`).

        Detached sandboxes are removed only with `include_live` (`sandbox stop --all`).
        """
        removed: list[str] = []
        for container in self.containers():
            labels = container.labels or {}
            if include_live or _is_stale(container.status, labels):
                base = Path(labels.get(f"{LABEL}.state-dir") or state.state_root() / "-")
                _remove(self.client, container.name, base)
                removed.append(labels.get(f"{LABEL}.sandbox", container.name))
        for rec in state.all_records():  # folders whose container vanished (engine reset...)
            if rec.backend == self.name and rec.sandbox_id not in removed and (
                    include_live or self._orphaned(rec)):
                state.remove_dir(rec.sandbox_id)
                removed.append(rec.sandbox_id)
        return removed

    def _orphaned(self, rec: state.SandboxRecord) -> bool:
        """A folder with no container, not one whose container is being created right now."""
        if self._exists(rec.container):
            return False
        if rec.detached:
            return (datetime.now(timezone.utc) - rec.created).total_seconds() > ORPHAN_GRACE_S
        return not state.pid_alive(rec.parent_pid)

    def _exists(self, name: str | None) -> bool:
        from docker.errors import NotFound

        if name is None:
            return False
        try:
            self.client.containers.get(name)
        except NotFound:
            return False
        return True

    def attach(self, record: state.SandboxRecord) -> DockerLaunched:
        sandbox_id = record.sandbox_id
        if record.backend != self.name or record.container is None:
            raise SandboxError(f"no docker sandbox {sandbox_id}; see `cellprompt sandbox status`")
        endpoint = Endpoint(token=record.token or "", uds=Path(record.uds) if record.uds else None,
                            peer_pid=record.peer_pid)
        return DockerLaunched(self.client, record.container, sandbox_id, endpoint,
                              state.sandbox_dir(sandbox_id), detached=True)


def _is_stale(status: str, labels: dict[str, str]) -> bool:
    if status in ("exited", "dead"):
        return True
    if labels.get(f"{LABEL}.detached") == "1":
        return False
    if labels.get(f"{LABEL}.host") != socket.gethostname():
        return False  # launched from another host sharing this engine: not ours to judge
    pid = labels.get(f"{LABEL}.parent-pid")
    started = labels.get(f"{LABEL}.parent-started")
    if not pid:
        return True
    return not state.pid_alive(int(pid), float(started) if started and started != "None" else None)

