"""The `bwrap` backend (default on Linux): the kernel service under bubblewrap.

Every namespace is unshared (the only network interface inside is loopback),
the environment is cleared down to a fixed minimum, and the filesystem holds
just the Python runtime (read-only, at its own paths, so the interpreter and
its compiled extensions find their libraries), the service package, the
datasets (read-only at /data/<name>), a fresh /workspace and a tmpfs /tmp.
The project folder, $HOME and every host secret are simply not there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Backend, Endpoint, Launched, SandboxSpec
from cellprompt.sandbox.limits import make_limits, remove_cgroups
from cellprompt.sandbox.process import (
    SERVICE_PACKAGE_PARENT,
    ProcessLaunched,
    cleanup_stale_processes,
    start_process,
    write_token,
)
from cellprompt.sandbox.service.numba_seed import SEED_ENV, SEED_INSIDE

INSIDE_PARENT = "/opt/cellprompt"  # the service package appears at /opt/cellprompt/service
INSIDE_RUN = "/run/cellprompt"
SANDBOX_UID = 1000
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/alternatives",
             "/etc/ssl/certs", "/etc/fonts")
ENV = {
    "HOME": "/tmp",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "MPLCONFIGDIR": "/tmp/matplotlib",
    "NUMBA_CACHE_DIR": "/tmp/numba",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONPATH": INSIDE_PARENT,
}
_WORKS: set[str] = set()  # bwrap binaries whose probe passed: probe once per process
BWRAP_FIX = ("install bubblewrap (`apt-get install bubblewrap`) and allow unprivileged user "
             "namespaces (sysctl kernel.unprivileged_userns_clone=1), or run as root")


def _bwrap() -> str | None:
    return shutil.which("bwrap")


def _runtime_binds(python: Path) -> list[str]:
    """Read-only binds of the system libraries and the Python runtime, at their own paths."""
    args: list[str] = []
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
    for f in ETC_FILES:
        args += ["--ro-bind-try", f, f]
    prefixes = {python.absolute().parent.parent, python.resolve().parent.parent}
    if python.absolute() == Path(sys.executable).absolute():
        prefixes |= {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
    for prefix in sorted(prefixes):
        if not any(str(prefix).startswith(d + "/") for d in SYSTEM_DIRS):
            args += ["--ro-bind", str(prefix), str(prefix)]
    return args


def numba_seed_dir(python: Path) -> Path:
    """Where `sandbox build` puts the warm numba cache of this runtime (see service/numba_seed.py).

    Keyed by the runtime and its numba/scanpy versions: numba's cache is only valid for the
    very files and versions that compiled it.
    """
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from cellprompt.config import get_settings

    parts = [str(python.absolute())]
    for pkg in ("numba", "scanpy", "umap-learn", "pynndescent"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg}=-")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return get_settings().cache_dir / "numba-seed" / key


def bwrap_argv(spec: SandboxSpec, base: Path, python: Path, uid_map: bool = True) -> list[str]:
    """The full bubblewrap command line for one sandbox rooted at host folder `base`."""
    bwrap = _bwrap() or "bwrap"
    args = [bwrap, "--unshare-all", "--new-session", "--clearenv", "--hostname", "sandbox"]
    if uid_map:
        args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    if not spec.detached:
        args.append("--die-with-parent")
    # /tmp, /proc and /dev first: a runtime that lives under /tmp (a venv in a checkout there)
    # must be bound on top of the fresh tmpfs, not hidden by it
    args += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    args += _runtime_binds(python)
    args += ["--ro-bind", str(SERVICE_PACKAGE_PARENT / "service"), f"{INSIDE_PARENT}/service"]
    seed = numba_seed_dir(python)
    if seed.is_dir():
        args += ["--ro-bind", str(seed), SEED_INSIDE, "--setenv", SEED_ENV, SEED_INSIDE]
    for mount in spec.datasets:
        args += ["--ro-bind", str(mount.source.resolve()), f"/data/{mount.name}"]
    if not spec.datasets:
        args += ["--dir", "/data"]
    args += ["--bind", str(base / "workspace"), "/workspace",
             "--bind", str(base / "run"), INSIDE_RUN,
             "--remount-ro", "/",  # the root tmpfs too: only /workspace and /tmp take writes
             "--chdir", "/workspace"]
    for key, value in ENV.items():
        args += ["--setenv", key, value]
    # joblib cannot count physical cores without /sys/devices; tell it what it may use
    args += ["--setenv", "LOKY_MAX_CPU_COUNT", str(max(1, int(spec.cpus)))]
    args += ["--", str(python), "-m", "service", "--uds", f"{INSIDE_RUN}/kernel.sock",
             "--token-file", f"{INSIDE_RUN}/token", "--workspace", "/workspace"]
    return args


class BwrapBackend(Backend):
    """bubblewrap namespaces + cgroup (or rlimit) limits around the kernel service."""

    name = "bwrap"

    def __init__(self, python: Path | None = None) -> None:
        # the sandbox's Python runtime; by default the one running cellprompt
        self.python = python or Path(sys.executable)

    def check(self) -> None:
        if _bwrap() in _WORKS:
            return
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailableError("the bwrap backend needs Linux; use backend docker")
        if _bwrap() is None:
            raise SandboxUnavailableError(f"bubblewrap (bwrap) is not installed: {BWRAP_FIX}")
        probe = [_bwrap() or "bwrap", "--unshare-all", "--unshare-user", "--die-with-parent",
                 "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
        res = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise SandboxUnavailableError(
                f"bubblewrap cannot create namespaces here ({res.stderr.strip()[:200]}): "
                f"{BWRAP_FIX}")
        _WORKS.add(probe[0])

    def launch(self, spec: SandboxSpec, sandbox_id: str) -> Launched:
        self.check()
        if spec.tcp:
            raise SandboxError("bwrap sandboxes have no network, so no TCP endpoint: use the "
                               "default Unix socket, or backend docker/local for TCP")
        for mount in spec.datasets:
            if not mount.source.exists():
                raise SandboxError(f"dataset {mount.source} does not exist: fix the path")
        base = state.make_dirs(sandbox_id)
        try:
            limits = make_limits(sandbox_id, spec.memory, spec.cpus, spec.pids)
        except BaseException:
            state.remove_dir(sandbox_id)
            raise
        run = base / "run"
        token = write_token(run)
        endpoint = Endpoint(token=token, uds=run / "kernel.sock")
        record = state.SandboxRecord(
            sandbox_id=sandbox_id, backend=self.name, detached=spec.detached,
            parent_pid=None if spec.detached else os.getpid(), uds=str(endpoint.uds),
            token=token if spec.detached else None, cgroups=[str(c) for c in limits.cgroups],
            memory=str(spec.memory), cpus=spec.cpus)
        state.write_record(record)
        # the shell joins the cgroups / sets rlimits, then becomes bwrap: nothing runs unlimited
        argv = ["/bin/sh", "-c", f"{limits.prologue()}\nexec \"$@\"", "sh",
                *bwrap_argv(spec, base, self.python)]
        try:
            launched: ProcessLaunched = start_process(argv, record=record, endpoint=endpoint,
                                                      env={"PATH": "/usr/bin:/bin"}, cwd=base)
        except BaseException:
            remove_cgroups(limits.cgroups)
            state.remove_dir(sandbox_id)
            raise
        return launched

    def cleanup_stale(self) -> list[str]:
        return cleanup_stale_processes(self.name)
