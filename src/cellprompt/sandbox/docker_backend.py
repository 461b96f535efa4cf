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

The image (engine connection, build, version check) is `docker_image.py`; a running
container (pinning, liveness, bounded removal) is `docker_container.py`.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cellprompt.config import get_settings
from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Backend, Endpoint, SandboxSpec
from cellprompt.sandbox.docker_container import (
    DockerLaunched,
    container_labels,
    container_name,
    remove_container,
)
from cellprompt.sandbox.docker_image import LABEL, connect, find_image
from cellprompt.sandbox.limits import agent_nproc, cpu_weight, host_uid, parse_memory
from cellprompt.sandbox.process import write_token
from cellprompt.sandbox.seccomp import docker_profile
from cellprompt.sandbox.service.kernel_launcher import AGENT_NICE_ENV, AGENT_NPROC_ENV

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

ORPHAN_GRACE_S = 300.0  # a detached sandbox's folder may precede its container by this much
RUN_IN = "/run/cellprompt"  # where the host's per-sandbox `run/` folder appears in the container
SERVICE_COMMAND = ["python", "-m", "service", "--uds", f"{RUN_IN}/kernel.sock",
                   "--token-file", f"{RUN_IN}/token", "--workspace", "/workspace",
                   "--scratch", "/tmp"]


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


def container_env(spec: SandboxSpec, own_uid: bool) -> dict[str, str]:
    """Variables for the service and the kernel launcher.

    Agent code runs at nice 19 (the container has a CPU quota of its own, so this only
    keeps the service ahead of a fork bomb). With a uid of its own (`own_uid`, under root)
    agent code also gets RLIMIT_NPROC below the pids limit, as on bwrap, so a fork bomb
    stops before the service can no longer start a thread; without one (the variable left
    empty) it would count every host process of the uid, so the pids cgroup is the limit.
    """
    return {"LOKY_MAX_CPU_COUNT": str(max(1, int(spec.cpus))), AGENT_NICE_ENV: "19",
            AGENT_NPROC_ENV: str(agent_nproc(spec.pids, parse_memory(spec.memory))) if own_uid else ""}


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
        user = self._user(sandbox_id, run)
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
                labels=container_labels(sandbox_id, spec, base),
                network_mode="none", read_only=True,
                tmpfs=tmpfs_mounts(memory, user), volumes=volumes, working_dir="/opt/cellprompt",
                environment=container_env(spec, own_uid=os.getuid() == 0),
                mem_limit=memory, memswap_limit=memory, nano_cpus=int(spec.cpus * 1e9),
                cpu_shares=cpu_weight(spec.cpus, 1024), pids_limit=spec.pids, cap_drop=["ALL"],
                security_opt=security_options(),
                init=True, ipc_mode="private", log_config={"type": "json-file",
                                                            "config": {"max-size": "1m"}})
        except APIError as exc:
            remove_container(self.client, name, base)
            raise SandboxError(f"docker could not start sandbox {sandbox_id}: "
                               f"{' '.join(str(exc.explanation or exc).split())}") from None
        launched = DockerLaunched(self.client, name, sandbox_id,
                                  Endpoint(token=token, uds=run / "kernel.sock"), base,
                                  spec.detached)
        launched.wait_until_serving()
        return launched

    def _user(self, sandbox_id: str, run: Path) -> str:
        """Who the service runs as, and the socket folder it may use.

        Under root, an unprivileged uid of the sandbox's own (`limits.host_uid`, as on
        bwrap: no other process on the host has it, so RLIMIT_NPROC limits this sandbox
        alone); we hand it the folder. Else our own uid, so that we can use its socket.
        """
        uid = host_uid(sandbox_id)
        if uid is None:
            return f"{os.getuid()}:{os.getgid()}"
        for path in (run, run / "token"):
            os.chown(path, uid, uid)
        return f"{uid}:{uid}"

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
                remove_container(self.client, container.name, base)
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

