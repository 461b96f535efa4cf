"""Issue 11, privilege: agent code must gain no power over the host's kernel or its root.

The red team wrote `|<workspace>/h.sh` into /proc/sys/kernel/core_pattern from a
cell (the sandbox uid was the host's root) and ran a script on the host as uid 0.
Each test here is such an attack, run through `execute` as agent code would;
writes use the value already in place, so even a sandbox that lets them through
changes nothing on the host. Syscall probes use arguments that an unfiltered
kernel answers with success or a distinctive errno (EFAULT, EBADF, EINVAL, a
keyring id...), so only a seccomp denial (EPERM/ENOSYS) passes.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.sandbox import HttpSandbox
from tests.sandbox.attacks import (
    BACKENDS,
    DENIED,
    FIND_SERVICE,
    run_ok,
    sandbox_processes,
    status_fields,
)
from tests.sandbox.conftest import open_for

pytestmark = pytest.mark.parametrize("attacker", BACKENDS, indirect=True, scope="module")

PROBES = Path(__file__).with_name("syscall_probes.py").read_text()

# pid_max is left out: since Linux 6.14 each pid namespace has its own (tested apart below)
HOST_SETTINGS = [
    "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/threads-max",
    "/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/randomize_va_space",
    "/proc/sys/fs/file-max", "/proc/sys/kernel/sysrq", "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/panic", "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/kernel/uevent_helper", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    "/sys/fs/cgroup/cgroup.procs",
]


@pytest.fixture(scope="module")
def attacker(request: pytest.FixtureRequest) -> Iterator[HttpSandbox]:
    with open_for(request.param, memory="512m", cpus=1.0, pids=256) as sb:
        yield sb


def test_host_kernel_settings_cannot_be_written(attacker: HttpSandbox) -> None:
    """core_pattern & co. and /sys: each write (of the current value) must be refused."""
    out = run_ok(attacker, f"""
import json
wrote = []
for path in {HOST_SETTINGS!r}:
    try:
        with open(path) as fh:
            current = fh.read()
    except OSError:
        continue  # not even readable (not mounted): nothing to write to
    if '[' in current:  # a choice list such as 'always [madvise] never'
        current = current.split('[')[1].split(']')[0]
    try:
        with open(path, 'w') as fh:
            fh.write(current if current.strip() else '\\n')
        wrote.append(path)
    except OSError:
        pass
print(json.dumps(wrote))
""")
    assert json.loads(out) == [], f"agent code wrote host-global kernel settings: {out}"


def test_host_pid_max_is_out_of_reach(attacker: HttpSandbox) -> None:
    """pid_max is per pid namespace on recent kernels, global on older ones: the sandbox may
    change its own, never the host's. One less than the current value is written (harmless
    for the moment it would last on the host) and the host's value is checked from here."""
    host = Path("/proc/sys/kernel/pid_max")
    before = host.read_text()
    out = run_ok(attacker, """
path = '/proc/sys/kernel/pid_max'
saved = open(path).read()
try:
    with open(path, 'w') as fh:
        fh.write(str(int(saved) - 1))
    print('wrote')
except OSError as exc:
    print('refused', exc.errno)
""")
    after = host.read_text()
    if out == "wrote":
        run_ok(attacker, "open(path, 'w').write(saved)")
    if after != before and os.geteuid() == 0:
        host.write_text(before)  # undo the escape before failing
    assert after == before, f"agent code changed the host's pid_max from {before} to {after}"


def test_sysrq_trigger_is_refused(attacker: HttpSandbox) -> None:
    """`h` only prints help to the kernel log, so an open door here costs nothing but a line."""
    out = run_ok(attacker, """
try:
    with open('/proc/sysrq-trigger', 'w') as fh:
        fh.write('h')
    print('WROTE')
except OSError as exc:
    print('refused', exc.errno)
""")
    assert out.startswith("refused"), out


def test_sandbox_processes_are_unprivileged_on_the_host(attacker: HttpSandbox) -> None:
    """Every process of the sandbox (its pid namespace, seen from the host) has a non-zero
    host uid (real, effective, saved) and no capability at all; inside, no root either."""
    marker = f"{600 + secrets.randbelow(100)}.{secrets.randbelow(10**6):06d}"
    out = run_ok(attacker, f"""
import os, subprocess
marker_proc = subprocess.Popen(['sleep', '{marker}'])
print(os.getuid(), os.geteuid(), os.getgid(), os.getegid())
print(open('/proc/self/uid_map').read().split())
""")
    try:
        ids, mapping = out.splitlines()[:2]
        assert "0" not in ids.split(), f"agent code runs as root inside: {ids}"
        procs = sandbox_processes(marker)
        assert len(procs) >= 3, procs  # at least the service, the kernel and the marker
        report = {}
        for proc in procs:
            fields = status_fields(proc.pid)
            report[proc.pid] = (proc.name(), fields["Uid"], fields["CapEff"], fields["CapPrm"])
            assert "0" not in fields["Uid"].split(), \
                f"{proc.name()} (pid {proc.pid}) runs as host root: uids {fields['Uid']}; " \
                f"uid_map inside {mapping}; all: {report}"
            for cap in ("CapEff", "CapPrm", "CapAmb"):
                assert int(fields[cap], 16) == 0, \
                    f"{proc.name()} (pid {proc.pid}) holds capabilities {cap}={fields[cap]}"
    finally:
        run_ok(attacker, "marker_proc.kill(); marker_proc.wait()")


def test_no_capabilities_and_no_new_privileges_inside(attacker: HttpSandbox) -> None:
    out = run_ok(attacker, """
fields = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())
print(*(fields[k].strip() for k in ('CapEff', 'CapPrm', 'CapAmb', 'NoNewPrivs', 'Seccomp')))
""")
    eff, prm, amb, nnp, seccomp = out.split()
    assert int(eff, 16) == int(prm, 16) == int(amb, 16) == 0, out
    assert nnp == "1", "no_new_privs is off: a set-uid binary would raise privileges"
    assert seccomp == "2", "no seccomp filter is loaded"


def test_no_new_user_namespace(attacker: HttpSandbox) -> None:
    """A fresh user namespace hands back every capability inside it: the kernel's whole
    namespace-gated attack surface. Neither unshare(1) nor the syscall may make one."""
    out = run_ok(attacker, """
import ctypes, os, shutil, subprocess
libc = ctypes.CDLL(None, use_errno=True)
results = []
tool = shutil.which('unshare')
if tool:
    for flags in (['-U'], ['-r'], ['-U', '-m', '-p', '-f']):
        r = subprocess.run([tool, *flags, 'true'], capture_output=True, text=True)
        results.append(('unshare ' + ' '.join(flags), r.returncode))
pid = os.fork()
if pid == 0:  # in a child: a success must not change the kernel's own namespaces
    os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
results.append(('unshare(CLONE_NEWUSER)', os.waitpid(pid, 0)[1]))
print([name for name, code in results if code == 0] or 'none', len(results))
""")
    assert out.startswith("none "), f"a user namespace was created inside: {out}"


def test_seccomp_denies_the_kernel_attack_surface(attacker: HttpSandbox) -> None:
    """ptrace of pid 1 and of the service, keyrings, bpf, perf, userfaultfd, io_uring,
    namespaces, mounts, kexec, modules, handle opens, other processes' memory."""
    out = run_ok(attacker, PROBES + FIND_SERVICE + "print(json.dumps(probes(svc_pid())))")
    results = json.loads(out)
    allowed = {name: res for name, res in results.items() if res[1] not in DENIED}
    assert not allowed, f"syscalls agent code could still make (result, errno): {allowed}"
    assert len(results) >= 20


def test_service_memory_cannot_be_read(attacker: HttpSandbox) -> None:
    """The token lives in the service's memory: /proc/<service>/mem and environ stay shut."""
    out = run_ok(attacker, FIND_SERVICE + """
opened = []
for what in ('mem', 'environ'):
    try:
        with open(f'/proc/{svc_pid()}/{what}', 'rb') as fh:
            fh.read(1)
        opened.append(what)
    except OSError:
        pass
print(opened)
""")
    assert out == "[]", f"agent code read the service's {out}"
