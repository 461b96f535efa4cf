"""Start ipykernel as the first victim of the out-of-memory killer, in agent code's CPU cgroup
(or, without one, at the lowest CPU priority), with bounded output buffers.

ipykernel buffers everything printed between two flushes (0.2 s apart) and sends
it as one message; a cell that prints 100 MB in a burst would hold it all,
several times over while it is serialised. Here a stream is flushed every
`FLUSH_AT` characters, so a flood moves through in bounded pieces that the
service caps as they arrive.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys

FLUSH_AT = 1 << 20
AGENT_NICE_ENV = "CELLPROMPT_AGENT_NICE"
AGENT_CGROUP_FD_ENV = "CELLPROMPT_AGENT_CGROUP_FD"  # agent code's CPU cgroup, an open fd
# Work a default kernel does on every cell that a throw-away sandbox has no use for: it
# writes each cell to an SQLite history file (the sandbox's is deleted with it; `In`,
# `_ih` and %history keep working from memory), and it sleeps 0.5 ms before every reply
# so that outputs reach clients that read the reply first (the service reads IOPub up to
# the idle status, which ipykernel sends after every output).
KERNEL_SETTINGS = ("--HistoryManager.enabled=False", "--IPythonKernel._execute_sleep=0")
AGENT_NPROC_ENV = "CELLPROMPT_AGENT_NPROC"  # processes agent code may have (the service keeps
# the rest of the sandbox's pids, so a fork bomb never leaves it unable to start a thread)


def _join_agent_cgroup() -> bool:
    """Move this process into agent code's CPU cgroup through the fd the service passed.

    The fd was opened by the host, so the move is allowed although nothing of the cgroup
    tree is visible in here; writing "0" moves the writer itself. The fd is closed before
    any agent code runs.
    """
    raw = os.environ.pop(AGENT_CGROUP_FD_ENV, "")
    if not raw.isdigit():
        return False
    try:
        os.write(int(raw), b"0")
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(int(raw))


def _bound_output_buffers() -> None:
    from ipykernel.iostream import OutStream

    original = OutStream.write
    pending_of: dict[int, int] = {}  # characters since the last flush, per stream (kernel-long)

    def write(self: OutStream, string: str) -> int | None:
        if not isinstance(string, str) or len(string) <= FLUSH_AT:
            written = original(self, string)
            pending = pending_of.get(id(self), 0) + len(string or "")
        else:  # one huge write goes out in pieces
            for start in range(0, len(string), FLUSH_AT):
                original(self, string[start:start + FLUSH_AT])
                self.flush()
            written, pending = len(string), 0
        if pending >= FLUSH_AT:
            self.flush()  # waits until the IOPub thread has sent the buffer
            pending = 0
        pending_of[id(self)] = pending
        return written

    OutStream.write = write  # type: ignore[method-assign]


if __name__ == "__main__":
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("1000")
    # In a CPU cgroup of its own below the sandbox's, agent code and all it forks run at
    # normal priority and the service still gets the CPU to interrupt or kill a fork bomb.
    # Failing that, lowest CPU priority when the sandbox has a CPU cgroup (its share against
    # the rest of the machine does not change); without one the backend sets AGENT_NICE_ENV
    # to 0: nice 19 would let any host process starve agent code.
    nice = os.environ.pop(AGENT_NICE_ENV, "19")
    if not _join_agent_cgroup():
        with contextlib.suppress(OSError, ValueError):
            os.nice(int(nice))
    with contextlib.suppress(OSError, ValueError, KeyError):
        nproc = int(os.environ.pop(AGENT_NPROC_ENV))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if sys.path and sys.path[0].endswith("service"):
        del sys.path[0]  # agent code must not import the service's modules by accident
    _bound_output_buffers()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=[*sys.argv[1:], *KERNEL_SETTINGS])
