"""Backend names to backends, and the `auto` choice: docker, else bwrap, else a clear error."""

from __future__ import annotations

import importlib

from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox.base import Backend

BACKENDS = ("local", "bwrap", "docker")


def _docker() -> Backend:
    """Imported lazily: the docker SDK is an optional extra."""
    module = importlib.import_module("cellprompt.sandbox.docker_backend")
    return module.DockerBackend()


def get_backend(name: str = "auto", *, unsafe: bool = False) -> Backend:
    """The backend called `name`; `auto` returns the first that works here."""
    if name == "local":
        from cellprompt.sandbox.local_backend import LocalBackend

        return LocalBackend(unsafe=unsafe)
    if name == "bwrap":
        from cellprompt.sandbox.bwrap_backend import BwrapBackend

        return BwrapBackend()
    if name == "docker":
        try:
            return _docker()
        except ImportError as exc:
            raise SandboxUnavailableError(
                f"the docker backend cannot load ({exc}): pip install 'cellprompt[docker]'"
            ) from None
    if name == "auto":
        return _auto()
    raise SandboxError(f"unknown sandbox backend {name!r}: use one of auto, {', '.join(BACKENDS)}")


def _auto() -> Backend:
    reasons = []
    for candidate in ("docker", "bwrap"):
        try:
            backend = get_backend(candidate)
            backend.check()
            return backend
        except SandboxError as exc:
            reasons.append(f"{candidate}: {exc.message}")
    raise SandboxUnavailableError(
        "no sandbox backend works here; either start Docker and run `cellprompt sandbox build "
        "--backend docker`, or install bubblewrap (`apt-get install bubblewrap`) ("
        + "; ".join(reasons) + ")")
