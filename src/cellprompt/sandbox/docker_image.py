"""The docker backend's image: connecting to the engine, building and checking the sandbox image.

Kept apart from the containers (`docker_backend.py`) because it changes for other
reasons: what goes into the image (`service/Dockerfile`, the service code and its
pins, pip settings forwarded to the build) and how an image is known to match this
cellprompt (labels: version and a digest of everything baked in, `service_hash`).
Sandboxes refuse an image built from other service code, with the command that
rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cellprompt.config import get_settings
from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.version import __version__

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.images import Image

SERVICE_DIR = Path(__file__).resolve().parent / "service"
IMAGE_REPO = "cellprompt-sandbox"
LABEL = "org.cellprompt"  # prefix of every label we set on images and containers
REBUILD = "rebuild it with `cellprompt sandbox build --backend docker`"
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
