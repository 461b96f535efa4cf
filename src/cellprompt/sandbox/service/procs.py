"""Process hygiene inside the sandbox: adopt orphans, kill what agent code left behind.

The service makes itself a child subreaper, so every process agent code forks
(even a fork bomb's daemonised children) stays its descendant and can be found
and killed when the kernel is restarted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def harden_self() -> None:
    """Adopt orphans, and forbid same-uid code (the kernel) to read our memory (the token)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_DUMPABLE, 0)


def _parents() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        fields = stat[stat.rfind(b")") + 2:].split()
        table[int(entry)] = int(fields[1])
    return table


def descendants(root: int) -> list[int]:
    """Every live process below `root`."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def kill_descendants(keep: frozenset[int] = frozenset(), rounds: int = 20) -> int:
    """Stop then kill all our descendants (a fork bomb keeps forking between rounds)."""
    me = os.getpid()
    killed = 0
    for _ in range(rounds):
        pids = [p for p in descendants(me) if p not in keep]
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        killed += len(pids)
        reap_zombies(keep)
    return killed


def reap_zombies(keep: frozenset[int] = frozenset()) -> None:
    """Collect exit statuses of adopted children, leaving the kernel's to its own Popen."""
    while True:
        try:  # WNOWAIT: peek first, so that a kernel's exit status is never stolen
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in keep:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, 0)
