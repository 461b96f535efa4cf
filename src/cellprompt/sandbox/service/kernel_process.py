"""The kernel as a plain child process, launched with the standard library alone.

Launching needs nothing from jupyter_client, so the service starts the kernel
first and imports jupyter_client and the web stack while the kernel boots:
cold start then costs little more than a bare kernel. The connection uses ZeroMQ
`ipc` sockets in a private folder, so the kernel opens no TCP port at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.kernel_launcher import AGENT_CGROUP_FD_ENV
from service.numba_seed import SEED_ENV

LAUNCHER = Path(__file__).with_name("kernel_launcher.py")
QUIET_WARNINGS = ("Could not find the number of physical cores", "IProgress not found")


def kernel_env() -> dict[str, str]:
    """The service's (already minimal) environment, minus what is only the service's business."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", SEED_ENV) and "TOKEN" not in k.upper()}
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # noise every trial would show the agent, about the sandbox rather than its analysis:
    # loky cannot count physical cores without /sys, tqdm finds no ipywidgets
    env.setdefault("PYTHONWARNINGS", ",".join(f"ignore:{m}:Warning" for m in QUIET_WARNINGS))
    env["JPY_PARENT_PID"] = str(os.getpid())  # ipykernel exits when the service is gone
    return env


class KernelProcess:
    """One ipykernel process and the connection info to reach it."""

    def __init__(self, private: Path, workspace: Path) -> None:
        stem = private / f"k{time.monotonic_ns()}"
        self.info: dict[str, Any] = {
            "transport": "ipc", "ip": str(stem), "shell_port": 1, "iopub_port": 2,
            "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": secrets.token_hex(32),
            "signature_scheme": "hmac-sha256", "kernel_name": "",
        }
        self.connection_file = Path(f"{stem}.json")
        fd = os.open(self.connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.info, fh)
        agent_cgroup = os.environ.get(AGENT_CGROUP_FD_ENV, "")  # kept open for every restart
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "-f", str(self.connection_file)],
            cwd=str(workspace), env=kernel_env(), stdin=subprocess.DEVNULL,
            start_new_session=True, pass_fds=(int(agent_cgroup),) if agent_cgroup.isdigit() else ())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """End the kernel and its process group, and forget its sockets."""
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for port in range(1, 6):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.info['ip']}-{port}")
        with contextlib.suppress(OSError):
            self.connection_file.unlink()
