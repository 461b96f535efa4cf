"""The `bwrap` backend (default on Linux): the kernel service under bubblewrap.

Every namespace is unshared (the only network interface inside is loopback),
the environment is cleared down to a fixed minimum, and the filesystem holds
just the Python runtime (read-only, at its own paths, so the interpreter and
its compiled extensions find their libraries), the service package, the
datasets (read-only at /data/<name>), and two tmpfs: /workspace (size-capped:
the agent gets ENOSPC) and /tmp (capped at the memory limit). The project
folder, $HOME and every host secret are simply not there, nor is any file of
the host the sandbox could write to.

How we use bubblewrap, and why (compared with Flatpak, Anthropic's
sandbox-runtime and Codex, which run it as an ordinary user):

* **Never host root inside.** Run by root, bwrap would map the sandbox's uid
  onto uid 0, and a fresh /proc would let agent code rewrite host-global
  sysctls (core_pattern: host root). So under root we drop to an unprivileged
  host uid of the sandbox's own (`setpriv`, after joining the cgroups) before
  bwrap starts: bwrap then runs unprivileged, exactly as for an ordinary user,
  and maps the sandbox's uid 1000 onto that host uid. The runtime may sit in
  folders that uid cannot enter (/root/.pyenv), so every host path the sandbox
  needs is opened by us and bound from the open fd (`--ro-bind-fd`): no path
  permission of the host is loosened.
* **No privilege inside.** No capabilities (`--cap-drop ALL`), no further user
  namespaces (`--disable-userns`), and the seccomp filter of `seccomp.py`.
* **The host talks only to its own service.** We create the listening Unix
  socket in a host folder the sandbox never sees and pass it in (`--listen-fd`),
  with the token in a pipe (`--token-fd`): nothing of the socket or token is on
  any path agent code can reach, and the client checks the listener on every
  connection (`transport.py`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import seccomp, state
from cellprompt.sandbox.base import Backend, Endpoint, Launched, SandboxSpec
from cellprompt.sandbox.limits import agent_nproc, host_uid, make_limits, parse_memory, remove_cgroups
from cellprompt.sandbox.process import (
    SERVICE_PACKAGE_PARENT,
    ProcessLaunched,
    attach_process,
    cleanup_stale_processes,
    start_process,
)
from cellprompt.sandbox.runtime_data import hidden_paths
from cellprompt.sandbox.service.kernel_launcher import (
    AGENT_CGROUP_FD_ENV,
    AGENT_NICE_ENV,
    AGENT_NPROC_ENV,
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


# run as root in a private mount namespace: bind each host source onto its stage path, then
# exec the rest (setpriv ... bwrap ...); the binds vanish with the namespace
STAGE_SCRIPT = ('while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 96; shift 2; done; '
                'shift; exec "$@"')


@dataclass
class LaunchPlan:
    """What one launch hands to bwrap: fds to inherit and, under root, host paths to stage.

    Under root bwrap runs as an unprivileged uid that may not enter the folders holding
    the runtime or the datasets (/root is 0700). Rather than loosen host permissions we
    bind each source, as root and in a private mount namespace, onto a path in the
    sandbox's own folder that uid can reach; bwrap binds from there. (bwrap's
    `--ro-bind-fd` does not help: it resolves the fd back to its path.)
    """

    stage: Path | None = None
    fds: list[int] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)  # source, target, source, target...

    def add_fd(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def ro_bind(self, source: Path, dest: str) -> list[str]:
        if self.stage is None:
            return ["--ro-bind", str(source), dest]
        target = self.stage / str(len(self.staged) // 2)
        if source.is_dir():
            target.mkdir(mode=0o711)
        else:
            target.touch(mode=0o444)
        self.staged += [str(source), str(target)]
        return ["--ro-bind", str(target), dest]

    def wrap(self, argv: list[str], uid: int | None) -> list[str]:
        """`argv` run as `uid`, after the staging binds, when we are root."""
        if uid is None:
            return argv
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        if not self.staged:
            return [*drop, *argv]
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                STAGE_SCRIPT, "sh", *self.staged, "--", *drop, *argv]

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _runtime_binds(python: Path, plan: LaunchPlan) -> list[str]:
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
    # the CPU topology, read-only (its few writable files need host root): joblib/loky and
    # numba count cores from it, and without it warn in every trial
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    prefixes = {python.absolute().parent.parent, python.resolve().parent.parent}
    if python.absolute() == Path(sys.executable).absolute():
        prefixes |= {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
    for prefix in sorted(prefixes):
        if not any(str(prefix).startswith(d + "/") for d in SYSTEM_DIRS):
            args += plan.ro_bind(prefix, str(prefix))
    for hidden in hidden_paths(python):  # library-bundled datasets, cellprompt itself
        if hidden.is_dir() and not hidden.is_symlink():
            args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
        elif hidden.exists() or hidden.is_symlink():
            args += ["--ro-bind", "/dev/null", str(hidden)]
    return args


def workspace_bytes(memory: str | int) -> int:
    """The /workspace tmpfs size: the quota setting, at most half the memory it is counted in."""
    from cellprompt.config import get_settings

    return min(parse_memory(get_settings().sandbox_workspace_quota), parse_memory(memory) // 2)


def numba_seed_dir(python: Path) -> Path:
    """Where `sandbox build` puts the warm numba cache of this runtime (see service/numba_seed.py).

    Keyed by the runtime, its numba/scanpy versions and the warm-up itself: numba's cache is
    only valid for the very files and versions that compiled it.
    """
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from cellprompt.config import get_settings
    from cellprompt.sandbox.service.numba_seed import WARMUP

    parts = [str(python.absolute()), WARMUP]
    for pkg in ("numba", "scanpy", "umap-learn", "pynndescent"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg}=-")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return get_settings().cache_dir / "numba-seed" / key


def bwrap_argv(spec: SandboxSpec, python: Path, plan: LaunchPlan, *, listen_fd: int,
               token_fd: int, own_cpu_cgroup: bool = True,
               agent_cgroup_fd: int | None = None) -> list[str]:
    """The full bubblewrap command line for one sandbox; `plan` collects fds and staging.

    `agent_cgroup_fd` is agent code's CPU cgroup (its `cgroup.procs`, opened by us): the
    kernel moves itself there through it, so it runs at normal priority; without one, agent
    code runs at nice 19 inside the sandbox's own CPU cgroup so the service can stop it.
    """
    bwrap = _bwrap() or "bwrap"
    args = [bwrap, "--unshare-all", "--new-session", "--clearenv", "--hostname", "sandbox",
            "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--disable-userns", "--cap-drop", "ALL"]
    if not spec.detached:
        args.append("--die-with-parent")
    # /tmp, /proc and /dev first: a runtime that lives under /tmp (a venv in a checkout there)
    # must be bound on top of the fresh tmpfs, not hidden by it
    # every writable place is a size-capped tmpfs: /dev itself is remounted read-only over
    # a capped /dev/shm (POSIX semaphores for joblib), so nothing inside grows without bound
    memory = parse_memory(spec.memory)
    args += ["--size", str(memory), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
             "--size", str(memory // 4), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    args += _runtime_binds(python, plan)
    args += plan.ro_bind(SERVICE_PACKAGE_PARENT / "service", f"{INSIDE_PARENT}/service")
    seed = numba_seed_dir(python)
    if seed.is_dir():
        args += [*plan.ro_bind(seed, SEED_INSIDE), "--setenv", SEED_ENV, SEED_INSIDE]
    for mount in spec.datasets:
        args += plan.ro_bind(mount.source.resolve(), f"/data/{mount.name}")
    if not spec.datasets:
        args += ["--dir", "/data"]
    args += ["--perms", "0700", "--size", str(workspace_bytes(spec.memory)),
             "--tmpfs", "/workspace",
             "--remount-ro", "/",  # the root tmpfs too: only /workspace and /tmp take writes
             "--chdir", "/workspace",
             "--seccomp", str(plan.add_fd(seccomp.bpf_fd()))]
    # the runtime's own `python`/`pip` first on PATH, as in the docker image (`!python x.py`)
    env = {**ENV, "PATH": f"{python.absolute().parent}:{ENV['PATH']}"}
    for key, value in env.items():
        args += ["--setenv", key, value]
    # joblib cannot count physical cores without /sys/devices; tell it what it may use
    args += ["--setenv", "LOKY_MAX_CPU_COUNT", str(max(1, int(spec.cpus))),
             "--setenv", AGENT_NICE_ENV, "19" if own_cpu_cgroup else "0",
             "--setenv", AGENT_NPROC_ENV, str(agent_nproc(spec.pids, parse_memory(spec.memory)))]
    if agent_cgroup_fd is not None:
        args += ["--setenv", AGENT_CGROUP_FD_ENV, str(agent_cgroup_fd)]
    args += ["--", str(python), "-m", "service", "--listen-fd", str(listen_fd),
             "--token-fd", str(token_fd), "--workspace", "/workspace", "--scratch", "/tmp"]
    return args


def _listener(path: Path) -> socket.socket:
    """The service's listening socket, made by us where only we can reach it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _token_pipe(token: str) -> int:
    """A pipe's read end holding `token` (well under the pipe buffer, so no writer blocks)."""
    read, write = os.pipe()
    os.write(write, token.encode())
    os.close(write)
    return read


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
        uid = host_uid(sandbox_id)
        if uid is not None and not all(shutil.which(c) for c in ("setpriv", "unshare", "mount")):
            raise SandboxUnavailableError("running as root, the bwrap backend drops to an "
                                          "unprivileged uid with `setpriv`, `unshare` and "
                                          "`mount`: install util-linux and mount")
        base = state.make_dirs(sandbox_id)
        try:
            limits = make_limits(sandbox_id, spec.memory, spec.cpus, spec.pids)
        except BaseException:
            state.remove_dir(sandbox_id)
            raise
        token = secrets.token_urlsafe(32)
        endpoint = Endpoint(token=token, uds=base / "run" / "kernel.sock")
        record = state.SandboxRecord(
            sandbox_id=sandbox_id, backend=self.name, detached=spec.detached,
            parent_pid=None if spec.detached else os.getpid(), uds=str(endpoint.uds),
            token=token if spec.detached else None, cgroups=[str(c) for c in limits.cgroups],
            memory=str(spec.memory), cpus=spec.cpus)
        state.write_record(record)
        plan = LaunchPlan(stage=None if uid is None else state.stage_dir(sandbox_id))
        sock: socket.socket | None = None
        try:
            assert endpoint.uds is not None
            sock = _listener(endpoint.uds)
            listen_fd, token_fd = sock.fileno(), plan.add_fd(_token_pipe(token))
            agent_fd = None if limits.agent_cgroup is None else plan.add_fd(
                os.open(limits.agent_cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
            argv = plan.wrap(bwrap_argv(spec, self.python, plan, listen_fd=listen_fd,
                                        token_fd=token_fd, agent_cgroup_fd=agent_fd,
                                        own_cpu_cgroup=limits.has_cpu_cgroup()), uid)
            # the shell joins the cgroups / sets rlimits as us, then becomes (setpriv) bwrap:
            # nothing of the sandbox ever runs unlimited or as root
            argv = ["/bin/sh", "-c", f"{limits.prologue()}\nexec \"$@\"", "sh", *argv]
            launched: ProcessLaunched = start_process(
                argv, record=record, endpoint=endpoint, env={"PATH": "/usr/bin:/bin"},
                cwd=Path("/"), pass_fds=(listen_fd, *plan.fds))
        except BaseException:
            remove_cgroups(limits.cgroups)
            state.remove_dir(sandbox_id)
            raise
        finally:
            plan.close()
            if sock is not None:
                sock.close()  # the service holds its own copy
        return launched

    def attach(self, record: state.SandboxRecord) -> Launched:
        return attach_process(record)

    def cleanup_stale(self) -> list[str]:
        return cleanup_stale_processes(self.name)
