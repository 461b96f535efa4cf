"""The seccomp filter of every sandbox: one list of denials, rendered for bwrap and for Docker.

Why a denylist (default allow) rather than Docker's allowlist: agent code runs the
whole scientific Python stack (numba, BLAS threads, joblib, matplotlib), whose
syscall needs change with every release; an allowlist that is one syscall short
breaks analyses in ways nobody can diagnose. What must never be reachable is a
short, stable list — the same one Docker's default profile and Flatpak deny:
kernel debugging of other processes (ptrace, process_vm_*), kernel keyrings,
eBPF and perf, new namespaces (so no user namespace inside, hence no fresh
capabilities), mounts, kernel modules and kexec, clock and swap control,
file-handle opens that bypass path checks, io_uring (a second syscall path
seccomp cannot see), terminal injection, and setting setuid/setgid bits on any
file (so no such bit can land on a host file through a shared folder).
Syscalls of foreign ABIs (i386 `int 0x80`, x32) kill the process: only the
native architecture is allowed at all, as libseccomp does by default.

`bpf_program()` compiles the list with libseccomp (through `pyseccomp`) for
bwrap's `--seccomp FD`; `docker_profile()` is the same list as a Docker
`security_opt=seccomp=<json>` profile.
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import tempfile
from dataclasses import dataclass

from cellprompt.errors import SandboxUnavailableError

# clone(2) flags that create namespaces; any one of them is denied
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                         0x20000000, 0x40000000)  # NEWNS CGROUP UTS IPC USER PID NET
S_ISUID, S_ISGID = 0o4000, 0o2000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


@dataclass(frozen=True)
class Denial:
    """`syscall` fails with `err`; with `arg`, only when `(args[index] & mask) == value`."""

    syscall: str
    err: int = errno.EPERM
    arg: tuple[int, int, int] | None = None  # (index, mask, value)


_PLAIN = (
    # other processes' memory and kernel objects
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # keyrings, eBPF, perf, userfaultfd (a classic exploit primitive)
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    # namespaces and mounts
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen",
    "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # the kernel itself
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module",
    "delete_module", "create_module", "query_module", "get_kernel_syms", "swapon", "swapoff",
    "acct", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie", "nfsservctl", "uselib",
    "ustat", "sysfs", "_sysctl", "iopl", "ioperm", "vm86", "vm86old",
    # clocks shared with the host
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    # opens that bypass path permission checks
    "open_by_handle_at", "name_to_handle_at",
    # io_uring runs syscalls the filter never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)

# (syscall, index of its mode argument): no setuid/setgid bit may be set on any file
_MODE_ARGS = (("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("open", 2), ("openat", 3),
              ("creat", 1), ("mkdir", 1), ("mkdirat", 2), ("mknod", 1), ("mknodat", 2))


def denials() -> list[Denial]:
    """Every denial, in order; what the tests and both renderings read."""
    out = [Denial(name) for name in _PLAIN]
    out += [Denial("clone", errno.EPERM, (0, flag, flag)) for flag in CLONE_NAMESPACE_FLAGS]
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc use clone
    out += [Denial("clone3", errno.ENOSYS), Denial("fchmodat2", errno.ENOSYS),
            Denial("openat2", errno.ENOSYS)]
    out += [Denial(name, errno.EPERM, (index, bit, bit))
            for name, index in _MODE_ARGS for bit in (S_ISUID, S_ISGID)]
    out += [Denial("ioctl", errno.EPERM, (1, 0xFFFFFFFF, req)) for req in (TIOCSTI, TIOCLINUX)]
    return out


# syscalls libseccomp 2.5 may not know by name, with their x86_64 / aarch64 numbers
_NUMBERS = {"fchmodat2": {"x86_64": 452, "aarch64": 452},
            "mount_setattr": {"x86_64": 442, "aarch64": 442},
            "quotactl_fd": {"x86_64": 443, "aarch64": 443}}


@functools.lru_cache(maxsize=1)
def bpf_program() -> bytes:
    """The filter as a classic BPF program for `bwrap --seccomp FD` (compiled once)."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # OSError: libseccomp.so.2 missing
        raise SandboxUnavailableError(
            f"the sandbox's seccomp filter needs libseccomp ({exc}): install the Debian "
            "package libseccomp2 and the Python package pyseccomp") from None
    filt = sc.SyscallFilter(defaction=sc.ALLOW)
    machine = platform.machine()
    for d in denials():
        action = sc.ERRNO(d.err)
        args = [sc.Arg(d.arg[0], sc.MASKED_EQ, d.arg[1], d.arg[2])] if d.arg else []
        name: str | int = d.syscall
        if sc.resolve_syscall(sc.Arch.NATIVE, d.syscall) == _UNKNOWN:
            number = _NUMBERS.get(d.syscall, {}).get(machine)
            if number is None:
                continue  # a syscall no architecture libseccomp knows has
            name = number
        filt.add_rule(action, name, *args)
    with tempfile.TemporaryFile() as fh:
        filt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def bpf_fd() -> int:
    """A readable fd holding the compiled filter, for bwrap to load (the caller closes it)."""
    fd = os.memfd_create("cellprompt-seccomp", 0)
    os.write(fd, bpf_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


_UNKNOWN = -1  # libseccomp's __NR_SCMP_ERROR
_DOCKER_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def docker_profile() -> dict[str, object]:
    """The same denials as a Docker seccomp profile (JSON-able)."""
    rules: list[dict[str, object]] = []
    for d in denials():
        rule: dict[str, object] = {"names": [d.syscall], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": d.err}
        if d.arg:  # Docker's MASKED_EQ: `value` is the mask, `valueTwo` the expected bits
            rule["args"] = [{"index": d.arg[0], "value": d.arg[1], "valueTwo": d.arg[2],
                             "op": "SCMP_CMP_MASKED_EQ"}]
        rules.append(rule)
    arch = _DOCKER_ARCH.get(platform.machine())
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch] if arch else [],
            "syscalls": rules}
