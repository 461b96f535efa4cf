"""The `local` backend: the kernel service as a plain child process, no isolation at all.

For development on machines without bubblewrap or Docker. Agent code runs with
your user's rights and can read your files and keys, hence the explicit
`unsafe=True` it demands.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cellprompt.errors import SandboxUnavailableError
from cellprompt.sandbox import state
from cellprompt.sandbox.base import Backend, Endpoint, Launched, SandboxSpec
from cellprompt.sandbox.process import (
    SERVICE_PACKAGE_PARENT,
    attach_process,
    cleanup_stale_processes,
    free_port,
    start_process,
    write_token,
)

REFUSAL = ("the local sandbox backend has no isolation: agent code could read your files, "
           "keys and network; pass unsafe=True (--unsafe) only for trusted code, or use "
           "backend bwrap or docker")


class LocalBackend(Backend):
    """No isolation; the same service and client as the real backends."""

    name = "local"

    def __init__(self, unsafe: bool = False) -> None:
        self.unsafe = unsafe

    def check(self) -> None:
        if not self.unsafe:
            raise SandboxUnavailableError(REFUSAL)

    def launch(self, spec: SandboxSpec, sandbox_id: str) -> Launched:
        self.check()
        base = state.make_dirs(sandbox_id)
        run, workspace = base / "run", base / "workspace"
        for mount in spec.datasets:  # no /data here: datasets appear in the workspace's data/
            (workspace / "data").mkdir(exist_ok=True)
            (workspace / "data" / mount.name).symlink_to(mount.source.resolve())
        token = write_token(run)
        if spec.tcp:
            port = free_port()
            endpoint = Endpoint(token=token, host="127.0.0.1", port=port)
            where = ["--port", str(port), "--host", "127.0.0.1"]
        else:
            endpoint = Endpoint(token=token, uds=run / "kernel.sock")
            where = ["--uds", str(run / "kernel.sock")]
        record = state.SandboxRecord(
            sandbox_id=sandbox_id, backend=self.name, detached=spec.detached,
            parent_pid=None if spec.detached else os.getpid(), uds=str(endpoint.uds or "") or None,
            host=endpoint.host, port=endpoint.port, token=token if spec.detached else None)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workspace),
               "LANG": "C.UTF-8", "PYTHONPATH": str(SERVICE_PACKAGE_PARENT),
               "MPLCONFIGDIR": str(base / "mpl")}
        argv = [sys.executable, "-m", "service", *where, "--token-file", str(run / "token"),
                "--workspace", str(workspace)]
        if not spec.detached:
            argv += ["--parent-pid", str(os.getpid())]
        return start_process(argv, record=record, endpoint=endpoint, env=env, cwd=Path(workspace))

    def attach(self, record: state.SandboxRecord) -> Launched:
        return attach_process(record)

    def cleanup_stale(self) -> list[str]:
        return cleanup_stale_processes(self.name)
