"""One persistent Jupyter kernel and the rules for running a cell on it.

The original service opened a new kernel client per request (1.2 s for `1+1`);
here one client lives as long as the kernel. Outputs are matched to the
request's own message id, so nothing printed by an earlier cell leaks into a
later reply. Interrupts go over the control channel ("message" interrupt mode),
because signals from outside do not cross a sandbox's pid namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from service import procs
from service.outputs import DEFAULT_CAP, OutputCollector

log = logging.getLogger("service.kernel")

KERNEL_NAME = "cellprompt-python"
INTERRUPT_GRACE_S = 1.0  # after an interrupt, how long a cell may take to stop before a restart
READY_TIMEOUT_S = 60.0


def _write_kernelspec(root: Path) -> Path:
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    launcher = Path(__file__).with_name("kernel_launcher.py")
    spec = {
        "argv": [sys.executable, str(launcher), "-f", "{connection_file}"],
        "display_name": "Python (cellprompt sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root / "kernels"


def _kernel_env() -> dict[str, str]:
    """The service's (already minimal) environment, minus what is only the service's business."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "JPY_PARENT_PID") and "TOKEN" not in k.upper()}
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def _death_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = " (most likely out of memory: the sandbox's memory limit was reached)" \
            if -code == signal.SIGKILL else ""
        cause = f"was killed by {name}{why}"
    elif code is not None:
        cause = f"exited with code {code}"
    else:
        cause = "stopped responding"
    return (f"The kernel {cause}. It has been restarted: all variables and imports "
            "from earlier cells are lost; files in /workspace are kept.")


class KernelRunner:
    """Owns the kernel manager and its single client; all methods run on the service's loop."""

    def __init__(self, workspace: Path, cap: int = DEFAULT_CAP,
                 grace_s: float = INTERRUPT_GRACE_S) -> None:
        self.workspace = workspace
        self.cap = cap
        self.grace_s = grace_s
        self.lock = asyncio.Lock()
        self.state = "starting"
        self._private = Path(tempfile.mkdtemp(prefix="cellprompt-service-"))
        self._ksm = KernelSpecManager(kernel_dirs=[str(_write_kernelspec(self._private))])
        self._km: AsyncKernelManager | None = None
        self._kc: Any = None
        self._ready: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Launch the kernel process; readiness is awaited lazily by the first request."""
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=self._ksm)
        stem = self._private / f"k{time.monotonic_ns()}"
        km.connection_file = f"{stem}.json"
        km.transport, km.ip = "ipc", str(stem)  # no TCP ports, not even on loopback
        await km.start_kernel(cwd=str(self.workspace), env=_kernel_env())
        self._km = km
        self.state = "starting"
        self._ready = asyncio.create_task(self._connect(km))

    async def _connect(self, km: AsyncKernelManager) -> None:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=READY_TIMEOUT_S)
        except RuntimeError:
            self.state = "dead"
            raise
        self._kc = kc
        self.state = "ready"
        log.info("kernel ready (pid %s)", self.kernel_pid())

    def kernel_pid(self) -> int | None:
        proc = getattr(getattr(self._km, "provisioner", None), "process", None)
        return getattr(proc, "pid", None)

    async def ready(self) -> None:
        if self._ready is not None:
            await self._ready

    async def _exit_code(self) -> int | None:
        prov = getattr(self._km, "provisioner", None)
        if prov is None:
            return None
        with contextlib.suppress(Exception):
            return await prov.poll()
        return None

    async def restart(self, wait: bool = True) -> None:
        """A fresh kernel, and nothing left of anything the old one started.

        With `wait=False` only the launch is awaited: a reply about a dead or stuck
        kernel goes out at once, and the next cell waits for the new kernel instead.
        """
        self.state = "restarting"
        old_km, old_kc = self._km, self._kc
        self._km, self._kc = None, None
        if old_kc is not None:
            with contextlib.suppress(Exception):
                old_kc.stop_channels()
        procs.kill_descendants()
        if old_km is not None:
            with contextlib.suppress(Exception):
                await old_km.shutdown_kernel(now=True)
        await self.start()
        if wait:
            await self.ready()
        log.info("kernel restarted")

    async def interrupt(self) -> None:
        if self._km is not None and self.state == "ready":
            await self._km.interrupt_kernel()

    async def shutdown(self) -> None:
        if self._kc is not None:
            with contextlib.suppress(Exception):
                self._kc.stop_channels()
        procs.kill_descendants()
        if self._km is not None:
            with contextlib.suppress(Exception):
                await self._km.shutdown_kernel(now=True)

    async def _drain_shell(self) -> None:
        """Execute replies are not needed (iopub says everything); keep their queue empty."""
        with contextlib.suppress(queue.Empty):
            while True:
                await self._kc.get_shell_msg(timeout=0)

    async def execute(self, code: str, timeout: float) -> dict[str, Any]:
        """Run one cell; the reply follows DESIGN.md's `/execute` schema."""
        async with self.lock:
            started = time.monotonic()
            try:
                await self.ready()
            except RuntimeError:
                await self.restart()
            reply = await self._run(code, timeout, started)
            procs.reap_zombies(frozenset(filter(None, [self.kernel_pid()])))
            reply["duration_s"] = round(time.monotonic() - started, 6)
            return reply

    async def _run(self, code: str, timeout: float, started: float) -> dict[str, Any]:
        kc, km = self._kc, self._km
        assert kc is not None and km is not None
        await self._drain_shell()
        out = OutputCollector(self.cap)
        msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        deadline = started + timeout
        interrupted_at: float | None = None
        count: int | None = None
        status = "ok"
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                await km.interrupt_kernel()
                interrupted_at = now
            if interrupted_at is not None and now >= interrupted_at + self.grace_s:
                await self.restart(wait=False)
                return self._reply(out, "timeout", count, state_lost=True, message=(
                    f"Execution exceeded the {timeout:g} s timeout and did not stop when "
                    "interrupted; the kernel was restarted and all variables are lost."))
            limit = (interrupted_at + self.grace_s) if interrupted_at is not None else deadline
            try:
                msg = await kc.get_iopub_msg(timeout=max(0.0, min(0.5, limit - now)))
            except queue.Empty:
                if not await km.is_alive():
                    code_ = await self._exit_code()
                    await self.restart(wait=False)
                    return self._reply(out, "died", count, state_lost=True,
                                       message=_death_message(code_))
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                break
            if kind == "stream":
                out.stream(content.get("name", "stdout"), content.get("text", ""))
            elif kind in ("display_data", "execute_result", "update_display_data"):
                out.rich("execute_result" if kind == "execute_result" else "display_data",
                         content.get("data", {}), content.get("metadata", {}))
            elif kind == "error":
                if interrupted_at is not None and content.get("ename") == "KeyboardInterrupt":
                    continue  # our own interrupt, reported as the timeout message instead
                status = "error"
                out.error(content.get("ename", ""), content.get("evalue", ""),
                          content.get("traceback", []))
            elif kind == "execute_input":
                count = content.get("execution_count")
            elif kind == "clear_output":
                out.clear()
        if interrupted_at is not None:
            return self._reply(out, "timeout", count, message=(
                f"Execution exceeded the {timeout:g} s timeout and was interrupted; "
                "the kernel and its variables are kept."))
        return self._reply(out, status, count)

    @staticmethod
    def _reply(out: OutputCollector, status: str, count: int | None, *,
               message: str | None = None, state_lost: bool = False) -> dict[str, Any]:
        return {"outputs": out.render(), "final_status": status, "execution_count": count,
                "message": message, "state_lost": state_lost}
