"""Host-side pieces: limits, records and stale cleanup, the registry, the bwrap command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import get_backend, state
from cellprompt.sandbox.base import Mount, SandboxSpec
from cellprompt.sandbox.bwrap_backend import LaunchPlan, bwrap_argv
from cellprompt.sandbox.limits import (
    AS_HEADROOM,
    SERVICE_CPU_FACTOR,
    make_limits,
    parse_memory,
    remove_cgroups,
)
from tests.conftest import require_sandbox_backend


@pytest.mark.parametrize(("text", "size"), [("512m", 512 << 20), ("4g", 4 << 30),
                                            ("1.5G", int(1.5 * (1 << 30))), ("4gb", 4 << 30),
                                            ("100", 100), (2048, 2048), ("64KiB", 64 << 10)])
def test_parse_memory(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


def test_parse_memory_rejects_nonsense() -> None:
    with pytest.raises(SandboxError, match="512m"):
        parse_memory("lots")


def test_limits_use_cgroups_when_writable_else_rlimits() -> None:
    lim = make_limits("unit-" + os.urandom(3).hex(), "256m", 0.5, 64)
    try:
        if lim.cgroups:
            mem = [c for c in lim.cgroups if "memory" in str(c)]
            if mem and (mem[0] / "memory.limit_in_bytes").exists():
                assert int((mem[0] / "memory.limit_in_bytes").read_text()) == 256 << 20
            assert "cgroup.procs" in lim.prologue()
        else:
            assert "ulimit -v" in lim.prologue()
        # the prologue really confines a shell: it reports its own memory limit
        res = subprocess.run(["/bin/sh", "-c", lim.prologue() + "\ncat /proc/self/cgroup; "
                              "ulimit -v"], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert (f"cellprompt-{lim.cgroups[0].name.removeprefix('cellprompt-')}" in res.stdout
                if lim.cgroups else str(((256 << 20) + AS_HEADROOM) // 1024) in res.stdout)
    finally:
        remove_cgroups(lim.cgroups)
    assert all(not c.exists() for c in lim.cgroups)


def test_cpu_cgroup_weighs_one_process_per_allowed_cpu() -> None:
    """Issue 13: one cgroup at the default weight squeezes the service, the kernel and its
    threads into one host process's share, so under load agent code ran ~2x slower than a
    raw kernel. The weight is one process's per CPU the sandbox may use (as Kubernetes
    maps CPU requests to cpu.shares)."""
    lim = make_limits("unit-" + os.urandom(3).hex(), "256m", 2.0, 64)
    try:
        weights = [cg / name for cg in lim.cgroups for name in ("cpu.shares", "cpu.weight")
                   if (cg / name).exists()]
        if not lim.has_cpu_cgroup() or not weights:
            pytest.skip("no writable CPU cgroup here")
        value = int(weights[0].read_text())
        assert value == (2048 if weights[0].name == "cpu.shares" else 200)
    finally:
        remove_cgroups(lim.cgroups)


def test_cpu_cgroup_is_split_between_the_service_and_agent_code() -> None:
    """Issue 13: agent code at normal priority, yet a fork bomb of any size weighs as one
    group against the service, which joins a leaf of its own with the larger weight."""
    lim = make_limits("unit-" + os.urandom(3).hex(), "256m", 1.0, 64)
    try:
        if lim.agent_cgroup is None or lim.service_cgroup is None:
            pytest.skip("no writable CPU cgroup here")
        name = "cpu.shares" if (lim.agent_cgroup / "cpu.shares").exists() else "cpu.weight"
        service, agent = (int((cg / name).read_text())
                          for cg in (lim.service_cgroup, lim.agent_cgroup))
        assert service == SERVICE_CPU_FACTOR * agent
        assert lim.service_cgroup in lim.entries()
        assert lim.service_cgroup.parent not in lim.entries()
        res = subprocess.run(["/bin/sh", "-c", lim.prologue() + "\ncat /proc/self/cgroup"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0 and "/service" in res.stdout, res.stderr
    finally:
        remove_cgroups(lim.cgroups)
    assert all(not c.exists() for c in lim.cgroups)  # children removed first


def test_bwrap_command_line_binds_only_what_it_needs(tmp_path: Path) -> None:
    data = tmp_path / "pbmc.h5ad"
    data.write_bytes(b"x")
    spec = SandboxSpec(datasets=[Mount(data, "pbmc.h5ad")], memory="1g")
    plan = LaunchPlan()
    argv = bwrap_argv(spec, Path(sys.executable), plan, listen_fd=7, token_fd=8)
    plan.close()
    joined = " ".join(argv)
    for flag in ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                 "--remount-ro /", f"--size {1 << 30} --tmpfs /tmp", "--disable-userns",
                 "--cap-drop ALL", f"--perms 0700 --size {1 << 29} --tmpfs /workspace",
                 "--seccomp", "--listen-fd 7", "--token-fd 8"]:
        assert flag in joined
    assert f"--ro-bind {data} /data/pbmc.h5ad" in joined
    project = str(Path(__file__).resolve().parents[2])
    binds = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")]
    assert project not in binds and str(Path.home()) not in binds
    assert "--bind" not in argv  # nothing of the host is writable from inside
    plan = LaunchPlan()
    assert "--die-with-parent" not in bwrap_argv(SandboxSpec(detached=True), Path(sys.executable),
                                                  plan, listen_fd=7, token_fd=8)
    plan.close()


def test_registry_names_and_refusals() -> None:
    with pytest.raises(SandboxUnavailableError, match="unsafe"):
        get_backend("local").check()
    get_backend("local", unsafe=True).check()
    with pytest.raises(SandboxError, match="unknown sandbox backend"):
        get_backend("nope")


def test_auto_picks_a_working_backend() -> None:
    require_sandbox_backend("bwrap")
    assert get_backend("auto").name in ("docker", "bwrap")


def test_crashed_parent_leaves_nothing_behind(tmp_path: Path) -> None:
    """A parent killed with SIGKILL takes its sandbox along; stale cleanup removes the rest."""
    require_sandbox_backend("bwrap")
    script = ("from cellprompt.sandbox import open_sandbox\n"
              "sb = open_sandbox('bwrap', memory='512m')\n"
              "print(sb.id, sb.launched.record.pid, flush=True)\n"
              "import time; time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    sandbox_id, pid = child.stdout.readline().split()
    rec = state.read_record(sandbox_id)
    assert rec is not None and state.pid_alive(int(pid))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while state.pid_alive(int(pid), rec.pid_started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not state.pid_alive(int(pid), rec.pid_started)  # --die-with-parent
    assert state.is_stale(rec)
    removed = get_backend("bwrap").cleanup_stale()
    assert sandbox_id in removed
    assert not state.sandbox_dir(sandbox_id).exists()
    assert all(not Path(c).exists() for c in rec.cgroups)
