"""Backend names to backends, and the `auto` choice: docker, else bwrap, else a clear error.

Each backend is a factory registered with `@backends.register(name)`; it imports its
module when asked for, so an optional SDK (docker) is needed only by its own backend.
"""

from __future__ import annotations

from collections.abc import Callable

from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.registry import Registry
from cellprompt.sandbox.base import Backend

BackendFactory = Callable[[bool], Backend]  # unsafe -> backend

backends: Registry[BackendFactory] = Registry("sandbox backend")


@backends.register("local")
def _local(unsafe: bool) -> Backend:
    from cellprompt.sandbox.local_backend import LocalBackend

    return LocalBackend(unsafe=unsafe)


@backends.register("bwrap")
def _bwrap(unsafe: bool) -> Backend:
    from cellprompt.sandbox.bwrap_backend import BwrapBackend

    return BwrapBackend()


@backends.register("docker")
def _docker(unsafe: bool) -> Backend:
    try:
        from cellprompt.sandbox.docker_backend import DockerBackend
    except ImportError as exc:  # the docker SDK is an optional extra
        raise SandboxUnavailableError(
            f"the docker backend cannot load ({exc}): pip install 'cellprompt[docker]'") from None
    return DockerBackend()


def get_backend(name: str = "auto", *, unsafe: bool = False) -> Backend:
    """The backend called `name`; `auto` returns the first that works here."""
    if name == "auto":
        return _auto()
    factory = backends.get(name)
    if factory is None:
        raise SandboxError(f"unknown sandbox backend {name!r}: use one of auto, {', '.join(backends)}")
    return factory(unsafe)


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
