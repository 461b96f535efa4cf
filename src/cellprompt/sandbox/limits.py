"""Resource limits for process sandboxes: cgroups where we may write them, else rlimits.

cgroup v1 (one hierarchy per controller) and v2 (unified) are both handled; the
sandbox's cgroups are nested under our own, so limits set on us still apply.
A shell prologue joins the cgroups (or sets rlimits) *before* exec'ing the
sandbox, so no process of it ever runs unlimited.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from cellprompt.config import size_bytes
from cellprompt.errors import SandboxError

CGROUP_ROOT = Path("/sys/fs/cgroup")
AS_HEADROOM = 2 << 30  # address space allowed beyond the memory limit when only rlimits apply


SERVICE_PIDS = 48  # of the sandbox's pids limit, kept for the service's own threads
SERVICE_CPU_FACTOR = 10  # the service's CPU weight over agent code's, inside one sandbox


def host_uid(sandbox_id: str) -> int | None:
    """The unprivileged host uid a sandbox runs as when we are root (None: keep our own).

    One uid per sandbox, never a real user's: RLIMIT_NPROC counts a uid's processes across
    the host, so only a uid of its own makes `agent_nproc` a limit on this sandbox alone.
    """
    if os.getuid() != 0:
        return None
    from cellprompt.config import get_settings

    return get_settings().sandbox_host_uid_base + int(sandbox_id.removeprefix("cp-"), 16) % (1 << 20)


def agent_nproc(pids: int, memory: int) -> int:
    """RLIMIT_NPROC of agent code: a fork bomb stops there, leaving the service room to
    answer, interrupt and restart. Below the pids limit (the service's own threads), and at
    one process per 16 MiB of memory: a bomb of Python clones that fills the memory limit
    makes the whole sandbox thrash, the service with it, long before it runs out of pids."""
    return max(16, min(pids - SERVICE_PIDS, memory // (16 << 20)))


def cpu_weight(cpus: float, unit: int) -> int:
    """The sandbox cgroup's CPU weight: `unit` (one ordinary process's) per CPU it may use.

    Under contention a cgroup at the default weight gets one host process's share for
    everything in it (service, kernel, its IOPub and BLAS threads), where the same kernel
    on the host weighs that much per busy thread: agent code ran at half speed or less on
    a loaded machine. One share per allowed CPU (as Kubernetes maps CPU requests to
    cpu.shares) puts it back at normal priority; the quota still caps it at `cpus`.
    """
    return round(unit * max(cpus, 1.0))


def parse_memory(value: str | int) -> int:
    """Bytes from `"512m"`, `"4g"`, `"1.5G"`, `"4gb"` or a plain number."""
    try:
        return size_bytes(value)
    except ValueError:
        raise SandboxError(f"memory limit {value!r} is not a size: use e.g. 512m or 4g") from None


def _own_cgroup_v1(controller: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(","):
                return path
    return None


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


@dataclass
class Limits:
    """The limits of one sandbox and how they were applied."""

    memory: int
    cpus: float
    pids: int
    cgroups: list[Path] = field(default_factory=list)
    rlimits: list[str] = field(default_factory=list)  # shell `ulimit` lines, fallback only
    # the CPU cgroup split in two leaves: `service`, where the launch joins, and `agent`,
    # which the kernel moves into before running any cell
    split: Path | None = None

    @property
    def service_cgroup(self) -> Path | None:
        return self.split / "service" if self.split else None

    @property
    def agent_cgroup(self) -> Path | None:
        return self.split / "agent" if self.split else None

    def entries(self) -> list[Path]:
        """The cgroups the launching shell joins: the service's CPU leaf in place of its parent."""
        return [cg / "service" if cg == self.split else cg for cg in self.cgroups]

    def prologue(self) -> str:
        """Shell lines that put the current shell into the sandbox's limits."""
        lines = [f"echo $$ > {shlex.quote(str(cg / 'cgroup.procs'))} || exit 97"
                 for cg in self.entries()]
        return "\n".join([*lines, *self.rlimits])

    def cpu_cgroup(self) -> Path | None:
        """The sandbox's CPU cgroup, when it competes with the host as one of its own."""
        return next((cg for cg in self.cgroups
                     if (cg / "cpu.max").exists() or (cg / "cpu.cfs_quota_us").exists()), None)

    def has_cpu_cgroup(self) -> bool:
        return self.cpu_cgroup() is not None

    def describe(self) -> str:
        how = "cgroups" if self.cgroups else ("rlimits" if self.rlimits else "none")
        return f"memory={self.memory} cpus={self.cpus} pids={self.pids} via {how}"


def _split_cpu(cg: Path, weight_file: str, agent_weight: int, lim: Limits) -> None:
    """Give the service and agent code CPU cgroups of their own below the sandbox's `cg`.

    Agent code then runs at normal priority (no nice 19), yet a fork bomb of any size weighs
    as one group against the service, which keeps SERVICE_CPU_FACTOR times its share and
    can still interrupt, kill and restart. The quota stays on `cg`, shared by both.
    """
    try:
        for child, weight in (("service", agent_weight * SERVICE_CPU_FACTOR),
                              ("agent", agent_weight)):
            (cg / child).mkdir(exist_ok=True)
            (cg / child / weight_file).write_text(str(weight))
    except OSError:
        return  # agent code falls back to nice 19 inside the sandbox's one CPU cgroup
    lim.split = cg


def _v1(name: str, memory: int, cpus: float, pids: int) -> list[Path]:
    made: list[Path] = []
    wanted = {"memory": [("memory.limit_in_bytes", str(memory)),
                         ("memory.memsw.limit_in_bytes", str(memory)),
                         ("memory.swappiness", "0")],
              "pids": [("pids.max", str(pids))],
              "cpu": [("cpu.cfs_period_us", "100000"),
                      ("cpu.cfs_quota_us", str(max(1000, int(cpus * 100000)))),
                      ("cpu.shares", str(cpu_weight(cpus, 1024)))]}
    for controller, settings in wanted.items():
        own = _own_cgroup_v1(controller)
        parent = CGROUP_ROOT / controller / (own or "/").lstrip("/")
        if own is None or not _writable(parent):
            continue
        cg = parent / name
        cg.mkdir(exist_ok=True)
        made.append(cg)
        for key, value in settings:
            with contextlib.suppress(OSError):  # memsw/swappiness absent without swap accounting
                (cg / key).write_text(value)
    return made


def _v2(name: str, memory: int, cpus: float, pids: int) -> list[Path]:
    own = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:]
    parent = CGROUP_ROOT / own.lstrip("/")
    controllers = (parent / "cgroup.controllers")
    if not controllers.exists() or not _writable(parent):
        return []
    available = set(controllers.read_text().split())
    with contextlib.suppress(OSError):
        enable = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in available)
        (parent / "cgroup.subtree_control").write_text(enable)
    cg = parent / name
    try:
        cg.mkdir(exist_ok=True)
        (cg / "memory.max").write_text(str(memory))
        with contextlib.suppress(OSError):
            (cg / "memory.swap.max").write_text("0")
        (cg / "pids.max").write_text(str(pids))
        with contextlib.suppress(OSError):
            (cg / "cpu.max").write_text(f"{max(1000, int(cpus * 100000))} 100000")
            (cg / "cpu.weight").write_text(str(min(10000, cpu_weight(cpus, 100))))
    except OSError:
        remove_cgroups([cg])
        return []
    return [cg]


def make_limits(sandbox_id: str, memory: str | int, cpus: float, pids: int) -> Limits:
    """Create the sandbox's cgroups, or fall back to rlimits when cgroups are read-only."""
    lim = Limits(parse_memory(memory), cpus, pids)
    name = f"cellprompt-{sandbox_id}"
    unified = (CGROUP_ROOT / "cgroup.controllers").exists()
    lim.cgroups = _v2(name, lim.memory, cpus, pids) if unified else \
        _v1(name, lim.memory, cpus, pids)
    if unified:
        have = {"memory", "pids"} if lim.cgroups else set()
    else:
        have = {p.relative_to(CGROUP_ROOT).parts[0] for p in lim.cgroups}
    if (cpu := lim.cpu_cgroup()) is not None:
        if unified:  # children with controllers: processes may only live in the leaves
            with contextlib.suppress(OSError):
                (cpu / "cgroup.subtree_control").write_text("+cpu")
                _split_cpu(cpu, "cpu.weight", 100, lim)
                if lim.split is None:  # the launch joins `cpu` itself after all
                    (cpu / "cgroup.subtree_control").write_text("-cpu")
        else:
            _split_cpu(cpu, "cpu.shares", 1024, lim)
    if "memory" not in have:
        # address space, not memory: thread stacks and arenas reserve far more than they use,
        # so the cap has headroom (a memory bomb is still stopped, a kernel still starts)
        lim.rlimits.append(f"ulimit -v {(lim.memory + AS_HEADROOM) // 1024} || exit 98")
    if "pids" not in have and os.getuid() != 0:
        # `ulimit -u` is bash's spelling (dash's is -p): prlimit works under any /bin/sh
        lim.rlimits.append(f"prlimit --pid $$ --nproc={pids}:{pids} || exit 98")
    return lim


def remove_cgroups(paths: list[Path] | list[str]) -> None:
    """Kill whatever is left in the cgroups and their children, then remove them all
    (children first, retrying while tasks exit)."""
    for raw in paths:
        cg = Path(raw)
        with contextlib.suppress(OSError):
            remove_cgroups([child for child in cg.iterdir() if child.is_dir()])
        for _ in range(50):
            if not cg.exists():
                break
            with contextlib.suppress(OSError):
                for pid in (cg / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.02)
