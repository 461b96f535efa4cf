"""The `docker` backend: the kernel service in a locked-down container, one per sandbox.

For machines where bubblewrap cannot run (macOS, Windows, clusters without user
namespaces). The container has no network at all (`network_mode="none"`): the
host talks to the service through a Unix socket in a bind-mounted host folder,
so no port is published anywhere. Datasets are bind-mounted read-only (never
copied, so a 10 GB dataset costs nothing), `/workspace` is a fresh host folder,
the root filesystem is read-only, and every capability is dropped.

A container outlives a crashed parent (no engine offers die-with-parent), so each
one carries labels naming its launcher; `cleanup_stale` removes those whose
launcher is gone, and every new run calls it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import tarfile
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from cellprompt import __version__
from cellprompt.config import get_settings
from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Backend, Endpoint, Launched, SandboxSpec
from cellprompt.sandbox.limits import parse_memory
from cellprompt.sandbox.process import http_client, write_token

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

SERVICE_DIR = Path(__file__).resolve().parent / "service"
IMAGE_REPO = "cellprompt-sandbox"
LABEL = "org.cellprompt"  # prefix of every label we set on images and containers
REBUILD = "rebuild it with `cellprompt sandbox build --backend docker`"
START_TIMEOUT_S = 120.0
ORPHAN_GRACE_S = 300.0  # a detached sandbox's folder may precede its container by this much
RUN_IN = "/run/cellprompt"  # where the host's per-sandbox `run/` folder appears in the container
SERVICE_COMMAND = ["python", "-m", "service", "--uds", f"{RUN_IN}/kernel.sock",
                   "--token-file", f"{RUN_IN}/token", "--workspace", "/workspace"]
# Host variables a build forwards to pip inside the image (only web indexes: a file:// index
# or find-links folder lives on the host's disk and means nothing inside the build).
PIP_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")

ProgressCallback = Callable[[str], None]


# -- engine ---------------------------------------------------------------------------------

def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(timeout: float = 120.0) -> DockerClient:
    """A client of the engine `DOCKER_HOST` names, or a one-line error saying how to get one."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise SandboxUnavailableError(
            "the docker backend needs the Python package `docker`: "
            "pip install 'cellprompt[docker]'") from None
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except DockerException as exc:
        raise _engine_error(exc) from None
    return client


def _engine_error(exc: Exception) -> SandboxUnavailableError:
    where = _engine_address()
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return SandboxUnavailableError(
            f"permission denied on the Docker socket {where}: add your user to the `docker` "
            "group (`sudo usermod -aG docker $USER`, then log in again) or use --backend bwrap")
    return SandboxUnavailableError(
        f"no Docker engine answers at {where}: start Docker (e.g. `sudo systemctl start "
        "docker`), point DOCKER_HOST at a running engine, or use --backend bwrap")


# -- image ----------------------------------------------------------------------------------

def image_tag() -> str:
    """The image this cellprompt uses: the configured one, else one named for its version."""
    return get_settings().docker_image or f"{IMAGE_REPO}:{__version__}"


def _context_files() -> list[Path]:
    return sorted(p for p in SERVICE_DIR.iterdir()
                  if p.is_file() and (p.suffix == ".py" or p.name in ("requirements.txt",
                                                                       "Dockerfile")))


def service_hash() -> str:
    """Digest of everything baked into the image from this package (service code, pins).

    The version tag alone misses a service edited without a version bump (any source
    checkout); comparing this digest catches it.
    """
    digest = hashlib.sha256()
    for path in _context_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _build_context() -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in _context_files():
            info = tarfile.TarInfo(path.name)
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _forwarded_pip_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for name in PIP_BUILD_ARGS:
        value = os.environ.get(name, "").strip()
        if name == "PIP_TRUSTED_HOST":
            if value:
                args[name] = value
            continue
        urls = [u for u in value.split() if u.startswith(("http://", "https://"))]
        if urls:
            args[name] = " ".join(urls)
    return args


def build_image(
    *,
    base_image: str | None = None,
    tag: str | None = None,
    network_mode: str | None = None,
    build_args: dict[str, str] | None = None,
    nocache: bool = False,
    progress: ProgressCallback | None = None,
) -> str:
    """Build the sandbox image from `service/Dockerfile`; return its tag.

    `base_image` defaults to the `docker_base_image` setting (the official slim Python
    image), `network_mode` to the `docker_build_network` setting: an engine started
    without a bridge (as in CI) can only reach the package index with `"host"`. pip's
    index settings of the host (PIP_INDEX_URL, ...) are forwarded, so a build behind a
    mirror works as the host's own pip does. `progress` receives each line of output.
    """
    settings = get_settings()
    client = connect(timeout=3600)
    tag = tag or image_tag()
    base = base_image or settings.docker_base_image
    args = {"BASE_IMAGE": base, **_forwarded_pip_args(), **(build_args or {})}
    labels = {f"{LABEL}.version": __version__, f"{LABEL}.service-hash": service_hash()}
    last: list[str] = []
    try:
        stream = client.api.build(
            fileobj=_build_context(), custom_context=True, tag=tag, buildargs=args,
            labels=labels, network_mode=network_mode or settings.docker_build_network,
            rm=True, forcerm=True, nocache=nocache, decode=True)
        for chunk in stream:
            if "error" in chunk:
                raise SandboxError(_build_failure(chunk["error"], last, base))
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in text.splitlines():
                if line.strip():
                    last = [*last[-4:], line.strip()]
                    if progress is not None:
                        progress(line.rstrip())
    except SandboxError:
        raise
    except Exception as exc:  # docker.errors.APIError/BuildError, connection loss
        raise SandboxError(_build_failure(str(exc), last, base)) from None
    try:
        client.images.get(tag)
    except Exception:
        raise SandboxError(_build_failure("the engine reports no image after the build",
                                          last, base)) from None
    return tag


def _build_failure(error: str, last: list[str], base: str) -> str:
    error = " ".join(error.split())
    step = next((line for line in reversed(last) if line.startswith("Step ")), "")
    if " : FROM " in step or "pull access denied" in error:
        return (f"docker image build failed: base image {base} is not available ({error[-300:]})"
                "; pull it, or set CELLPROMPT_DOCKER_BASE_IMAGE to an image the engine has")
    where = f" at {step}" if step else ""
    return (f"docker image build failed{where}: {error[-400:]}; fix the cause and rerun "
            "`cellprompt sandbox build --backend docker`")


def find_image(client: DockerClient) -> Image:
    """The sandbox image, checked against this package; else why it cannot be used."""
    from docker.errors import ImageNotFound

    tag = image_tag()
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        others = client.images.list(filters={"label": f"{LABEL}.image=sandbox"})
        versions = sorted({(i.labels or {}).get(f"{LABEL}.version", "?") for i in others})
        if versions:
            raise SandboxUnavailableError(
                f"docker image {tag} is missing; the engine only has sandbox images of "
                f"cellprompt {', '.join(versions)} (this is {__version__}): {REBUILD}") from None
        raise SandboxUnavailableError(
            f"docker image {tag} is missing: build it with "
            "`cellprompt sandbox build --backend docker`") from None
    labels = image.labels or {}
    if labels.get(f"{LABEL}.version") != __version__:
        raise SandboxUnavailableError(
            f"docker image {tag} was built for cellprompt {labels.get(f'{LABEL}.version', '?')}"
            f", this is {__version__}: {REBUILD}")
    if labels.get(f"{LABEL}.service-hash") != service_hash():
        raise SandboxUnavailableError(
            f"docker image {tag} holds an older kernel service than this cellprompt: {REBUILD}")
    return image


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


def _remove(client: DockerClient, name: str, base: Path | None) -> None:
    """Remove the container (running or not) and its host folder; ignore what is gone."""
    from docker.errors import APIError, NotFound

    with contextlib.suppress(NotFound):
        try:
            client.api.remove_container(name, force=True)
        except APIError as exc:
            if "already in progress" not in str(exc):
                raise
    if base is not None and base.parent == state.state_root():
        state.remove_dir(base.name)


def _remove_quietly(client: DockerClient, name: str, base: Path) -> None:
    """For finalisers: at interpreter exit the engine may be gone; nothing to report to."""
    with contextlib.suppress(Exception):
        _remove(client, name, base)


class DockerLaunched(Launched):
    """A sandbox container, known by name (it may have vanished: then it is simply not alive)."""

    def __init__(self, client: DockerClient, name: str, sandbox_id: str,
                 endpoint: Endpoint, base: Path, detached: bool) -> None:
        self.sandbox_id = sandbox_id
        self.endpoint = endpoint
        self.workspace = base / "workspace"
        self.container_name = name
        self._client = client
        self._base = base
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

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once `/status` answers; fail with the container's log when it never does."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        sock = self.endpoint.uds
        assert sock is not None
        with http_client(self.endpoint, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if sock.exists():
                    with contextlib.suppress(httpx.TransportError):
                        if client.get("/status").status_code == 200:
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
        run, workspace = base / "run", base / "workspace"
        token = write_token(run)
        user = self._user(image, run, workspace)
        unreadable = [m.source for m in spec.datasets if not _readable_by(m.source, user)]
        if unreadable:
            state.remove_dir(sandbox_id)
            raise SandboxError(f"dataset {unreadable[0]} is not readable by the docker sandbox's user "
                               f"(uid {user.split(':')[0]}): make it readable (chmod a+r {unreadable[0]})")
        name = container_name(sandbox_id)
        memory = parse_memory(spec.memory)
        volumes = {str(run): {"bind": RUN_IN, "mode": "rw"},
                   str(workspace): {"bind": "/workspace", "mode": "rw"}}
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
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={memory},mode=1777"},
                volumes=volumes, working_dir="/opt/cellprompt",
                environment={"LOKY_MAX_CPU_COUNT": str(max(1, int(spec.cpus)))},
                mem_limit=memory, memswap_limit=memory, nano_cpus=int(spec.cpus * 1e9),
                pids_limit=spec.pids, cap_drop=["ALL"], security_opt=["no-new-privileges"],
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

    def _user(self, image: Image, run: Path, workspace: Path) -> str:
        """Who the service runs as, and folders it may use.

        The image's unprivileged user, when we are root (we hand it the folders);
        else our own uid, so that we can use the socket and files it creates.
        """
        uid = os.getuid()
        if uid != 0:
            return f"{uid}:{os.getgid()}"
        sandbox_uid = int((image.labels or {}).get(f"{LABEL}.uid", "1000"))
        for path in (run, run / "token", workspace):
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

    def attach(self, sandbox_id: str) -> DockerLaunched:
        """The recorded sandbox `sandbox_id`, running or not (for `sandbox exec/stop/logs`)."""
        rec = state.read_record(sandbox_id)
        if rec is None or rec.backend != self.name or rec.container is None:
            raise SandboxError(f"no docker sandbox {sandbox_id}; see `cellprompt sandbox status`")
        endpoint = Endpoint(token=rec.token or "", uds=Path(rec.uds) if rec.uds else None)
        return DockerLaunched(self.client, rec.container, sandbox_id, endpoint,
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
    return not state.pid_alive(int(pid), float(started) if started not in (None, "", "None")
                               else None)

