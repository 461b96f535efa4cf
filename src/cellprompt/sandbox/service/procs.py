"""Process hygiene inside the sandbox: adopt orphans, kill what agent code left behind.

The service makes itself a child subreaper, so every process agent code forks
(even a fork bomb's daemonised children) stays its descendant and can be found
and killed when the kernel is restarted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import time
from pathlib import Path

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


def kill_descendants(keep: frozenset[int] = frozenset(), deadline_s: float = 5.0) -> int:
    """Stop then kill all our descendants until none is left (a fork bomb keeps forking while
    it is being killed), reaping as we go; gives up after `deadline_s`."""
    me = os.getpid()
    killed = 0
    end = time.monotonic() + deadline_s
    while True:
        reap_zombies(keep)
        pids = [p for p in descendants(me) if p not in keep]
        if not pids or time.monotonic() > end:
            return killed
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        killed += len(pids)
        time.sleep(0.005)  # let the kills land before looking again


def reap_zombies(keep: frozenset[int] = frozenset()) -> None:
    """Collect the exit status of every adopted child that has ended, but never the kernel's
    (its own Popen waits for it). Asks child by child: a blanket wait could stop at the kernel
    and leave the rest as zombies. It runs after every cell, so a peek that reaps nothing
    (`WNOWAIT`) comes first: the scan of /proc runs only when some child has ended."""
    try:
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return
    except ChildProcessError:
        return
    me = os.getpid()
    for pid, ppid in _parents().items():
        if ppid == me and pid not in keep:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def empty_folder(folder: Path, keep: Path) -> None:
    """Delete everything in `folder` but `keep` (the service's own files), never following
    a symlink: what agent code left in /tmp must not outlive its kernel."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
