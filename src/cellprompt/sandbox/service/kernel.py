"""One persistent Jupyter kernel and the rules for running a cell on it.

The original service opened a new kernel client per request (1.2 s for `1+1`);
here one client lives as long as the kernel. Outputs are matched to the
request's own message id, so nothing printed by an earlier cell leaks into a
later reply. Interrupts are `interrupt_request` messages on the control channel
(Jupyter's "message" interrupt mode), because signals from outside do not cross
a sandbox's pid namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from service import procs
from service.kernel_process import KernelProcess
from service.numba_seed import seed_cache
from service.outputs import DEFAULT_CAP, OutputCollector

log = logging.getLogger("service.kernel")

INTERRUPT_GRACE_S = 1.0  # after an interrupt, how long a cell may take to stop before a restart
READY_TIMEOUT_S = 120.0


def _death_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = f"was killed by {name}"  # whether by the memory limit only the host can tell
    elif code is not None:
        cause = f"exited with code {code}"
    else:
        cause = "stopped responding"
    return (f"The kernel {cause}. It has been restarted: all variables and imports "
            "from earlier cells are lost; files in /workspace are kept.")


class _Inbox:
    """One channel of the kernel client, read without a loop round trip per message.

    jupyter_client's `get_*_msg` awaits a poll and then a receive for every message;
    here a message already queued is taken at once from a synchronous shadow of the
    same socket, and the loop is awaited only when the queue is empty. A message is
    decoded into the three parts the service reads (header, parent header, content),
    its signature checked: `Session.deserialize` would also parse every date of both
    headers, 15% of the service's CPU per cell, for nothing read here. Agent code can
    publish on IOPub, so a message that is malformed or wrongly signed is dropped, never
    allowed to fail the cell's reply.
    """

    def __init__(self, channel: Any) -> None:
        self._waiter = channel.socket
        self._socket = zmq.Socket.shadow(channel.socket.underlying)
        self._session = channel.session

    def _take(self) -> list[bytes] | None:
        try:
            return self._socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None

    def drop_queued(self) -> None:
        """Discard what is queued, unread: replies the service does not need."""
        while self._take() is not None:
            pass

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None once `timeout` seconds pass without one."""
        parts = self._take()
        if parts is None:
            if not await self._waiter.poll(int(timeout * 1000), zmq.POLLIN):
                return None
            parts = self._take()
            if parts is None:
                return None
        return self._decode(parts)

    def _decode(self, parts: list[bytes]) -> dict[str, Any] | None:
        """Header, parent header and content; None for a malformed or wrongly signed one."""
        try:
            _, frames = self._session.feed_identities(parts)
            signature, header, parent, metadata, content = frames[:5]
        except ValueError:  # no delimiter, or fewer than five frames after it
            return None
        auth = self._session.auth
        if auth is not None:
            mac = auth.copy()
            for frame in (header, parent, metadata, content):
                mac.update(frame)
            if not hmac.compare_digest(signature, mac.hexdigest().encode()):
                return None
        try:
            msg = {"header": json.loads(header), "parent_header": json.loads(parent),
                   "content": json.loads(content)}
        except ValueError:
            return None
        return msg if all(isinstance(part, dict) for part in msg.values()) else None


class _Client:
    """The kernel's client, and its three channels the service reads, as inboxes."""

    def __init__(self, kc: AsyncKernelClient) -> None:
        self.kc = kc
        self.iopub = _Inbox(kc.iopub_channel)
        self.shell = _Inbox(kc.shell_channel)
        self.control = _Inbox(kc.control_channel)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()


class KernelRunner:
    """Owns the kernel process and its single client; all methods run on the service's loop."""

    def __init__(self, workspace: Path, cap: int = DEFAULT_CAP,
                 grace_s: float = INTERRUPT_GRACE_S, private: Path | None = None,
                 first: KernelProcess | None = None, scratch: Path | None = None) -> None:
        self.workspace = workspace
        self.scratch = scratch
        self.cap = cap
        self.grace_s = grace_s
        self.lock = asyncio.Lock()
        self.state = "starting"
        self._private = private or Path(tempfile.mkdtemp(prefix="cellprompt-service-"))
        self._pending = first  # launched before this module was even imported
        self._kp: KernelProcess | None = None
        self._client: _Client | None = None
        self._ready: asyncio.Task[None] | None = None
        self._interrupts_sent = 0  # their replies wait on the control channel until drained
        # one thread, started now, for killing what a kernel left behind: when a fork bomb
        # has used up the sandbox's pids, no new thread could be started then
        self._reaper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reaper")
        self._reaper.submit(lambda: None).result()

    async def start(self) -> None:
        """Launch the kernel (unless already launched); readiness is awaited lazily."""
        kp, self._pending = self._pending, None
        self._kp = kp or KernelProcess(self._private, self.workspace)
        self.state = "starting"
        self._ready = asyncio.create_task(self._connect(self._kp))

    async def _connect(self, kp: KernelProcess) -> None:
        kc = AsyncKernelClient()
        kc.load_connection_info(kp.info)
        kc.start_channels(hb=False)
        client = _Client(kc)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await self._answers(client):
            if not kp.alive() or time.monotonic() > deadline:
                client.close()
                self.state = "dead"
                raise RuntimeError(_death_message(kp.exit_code()))
        self._client = client
        self.state = "ready"
        log.info("kernel ready (pid %s)", kp.pid)

    @staticmethod
    async def _answers(client: _Client) -> bool:
        """Ready means a kernel_info reply *and* its status on IOPub: a SUB socket drops
        whatever is published before its subscription is through, and a cell's output
        must not be lost that way."""
        msg_id = client.kc.kernel_info()
        if await client.shell.get(0.25) is None:
            return False
        while (msg := await client.iopub.get(0.25)) is not None:
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    def kernel_pid(self) -> int | None:
        return self._kp.pid if self._kp is not None else None

    async def ready(self) -> None:
        if self._ready is not None:
            await self._ready

    async def restart(self, wait: bool = True) -> None:
        """A fresh kernel, and nothing left of anything the old one started.

        Killing the old kernel and all it forked, emptying /tmp and launching the new
        kernel run in the background (`_ready`, the killing in a thread): with
        `wait=False` a reply about a dead or stuck kernel goes out at once, even while a
        fork bomb is still being put down, and the next call waits for the new kernel.
        """
        self.state = "restarting"
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        old_kp, old_client = self._kp, self._client
        self._kp, self._client = None, None
        self._ready = asyncio.create_task(self._replace(old_kp, old_client))
        if wait:
            await self.ready()

    async def _replace(self, old_kp: KernelProcess | None,
                       old_client: _Client | None) -> None:
        if old_client is not None:
            old_client.close()
        await asyncio.get_running_loop().run_in_executor(self._reaper, self._clear, old_kp)
        self._kp = KernelProcess(self._private, self.workspace)
        self.state = "starting"
        await self._connect(self._kp)
        log.info("kernel restarted")

    def _clear(self, old_kp: KernelProcess | None) -> None:
        if old_kp is not None:
            old_kp.kill()
        procs.kill_descendants()
        if self.scratch is not None:  # nothing of the old kernel's /tmp survives it
            procs.empty_folder(self.scratch, keep=self._private)
            seed_cache()

    async def interrupt(self) -> None:
        if self._client is not None and self.state == "ready":
            kc = self._client.kc
            kc.control_channel.send(kc.session.msg("interrupt_request", content={}))
            self._interrupts_sent += 1

    async def shutdown(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        if self._client is not None:
            self._client.close()
        if self._kp is not None:
            self._kp.kill()
        procs.kill_descendants()

    def _drain(self) -> None:
        """Execute and interrupt replies are not needed (iopub says everything): drop them."""
        assert self._client is not None
        self._client.shell.drop_queued()
        if self._interrupts_sent:
            self._client.control.drop_queued()
            self._interrupts_sent = 0

    async def execute(self, code: str, timeout: float) -> dict[str, Any]:
        """Run one cell; the reply follows DESIGN.md's `/execute` schema."""
        async with self.lock:
            started = time.monotonic()
            try:
                await self.ready()
            except (RuntimeError, asyncio.CancelledError):
                await self.restart()
            reply = await self._run(code, timeout, started)
            procs.reap_zombies(frozenset(filter(None, [self.kernel_pid()])))
            reply["duration_s"] = round(time.monotonic() - started, 6)
            return reply

    async def _run(self, code: str, timeout: float, started: float) -> dict[str, Any]:
        client, kp = self._client, self._kp
        assert client is not None and kp is not None
        self._drain()
        out = OutputCollector(self.cap)
        msg_id = client.kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        deadline = started + timeout
        interrupted_at: float | None = None
        count: int | None = None
        status = "ok"
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                await self.interrupt()
                interrupted_at = now
            if interrupted_at is not None and now >= interrupted_at + self.grace_s:
                await self.restart(wait=False)
                return self._reply(out, "timeout", count, state_lost=True, message=(
                    f"Execution exceeded the {timeout:g} s timeout and did not stop when "
                    "interrupted; the kernel was restarted and all variables are lost."))
            limit = (interrupted_at + self.grace_s) if interrupted_at is not None else deadline
            msg = await client.iopub.get(max(0.0, min(0.5, limit - now)))
            if msg is None:
                if not kp.alive():
                    code_ = kp.exit_code()
                    await self.restart(wait=False)
                    return self._reply(out, "died", count, state_lost=True,
                                       message=_death_message(code_))
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["header"].get("msg_type"), msg["content"]
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
