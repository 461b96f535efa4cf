"""`cellprompt mcp serve`: one trial of a task, played by whichever MCP client connects.

The trial goes through the same `execute_trial` as every run (task loading, sealed
data, sandbox, workspace copy, grading), with the MCP server in the place of the
agent loop, and is stored as a one-trial run folder: `cellprompt notebook`,
`evaluate` and `report` read it like any other run. The trial ends, and is graded, on
`submit_answer`, when a limit is reached, or when the client goes away.

Over stdio the client owns the process it launched and kills its whole process group
seconds after it closes the pipe: too soon to grade. So the launched process is only
a relay (`bridge`) to a *linked* HTTP worker started in a session of its own; the
worker learns that the client left when the relay's pipe to it closes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cellprompt.agent.loop import AgentLimits, AgentOutcome
from cellprompt.errors import CellpromptError
from cellprompt.records.run import TrialRecord, TrialSpec
from cellprompt.runs.plan import trial_id
from cellprompt.runs.store import RunStore
from cellprompt.sandbox.base import Sandbox

READY_PREFIX = "cellprompt-mcp-ready "  # the linked worker's first stdout line: this + its URL
LINGER_S = 20.0  # after the trial ends, "trial is over" replies until the client leaves, at most this
WORKER_START_S = 300.0  # materialising a dataset and starting a sandbox may take a while


@dataclass
class Listening:
    """Where the HTTP server waits for its client (told to the user before the trial starts)."""

    url: str
    token: str


@dataclass
class _Serving:
    """The server of the trial, kept up after the trial so late calls get a clear answer."""

    client_gone: threading.Event = field(default_factory=threading.Event)
    http: Any = None

    def linger(self, timeout_s: float) -> None:
        """Until the client has gone (pipe closed or session ended), at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.client_gone.is_set():
            if self.http is None or self.http.client_closed.is_set():
                return
            time.sleep(0.05)


def _watch_pipe(fd: int, gone: threading.Event) -> None:
    """A linked worker's client is gone when the relay's end of our stdin closes."""
    while True:
        try:
            if not os.read(fd, 1 << 12):
                break
        except OSError:
            break
    gone.set()


def _play(*, system_prompt: str, first_message: str, model: Any, sandbox: Sandbox, limits: AgentLimits,
          save_image: Callable[[str], str], should_stop: Callable[[], bool] = lambda: False,
          open_ended: bool = False, serving: _Serving, port: int, token: str,
          on_ready: Callable[[Listening], None]) -> AgentOutcome:
    """Serve the trial's tools until it ends; the `agent` of `execute_trial`."""
    from cellprompt.mcp.server import GRACE_S, HttpServer, build_server
    from cellprompt.mcp.session import TrialSession

    session = TrialSession(sandbox=sandbox, limits=limits, save_image=save_image, should_stop=should_stop)
    serving.http = HttpServer(build_server(session, first_message, system_prompt), session,
                              token=token, port=port)
    serving.http.start()
    on_ready(Listening(serving.http.url, token))
    serving.http.wait(serving.client_gone)
    if not session.done.is_set():
        session.finish("error", error="the MCP client went away without submitting an answer")
    time.sleep(GRACE_S)  # the reply to the last call is still on its way
    return session.outcome()


def announce_linked(listening: Listening) -> None:
    """Tell the relay where we listen (our first and last stdout line), then point stdout at
    stderr: the relay stops reading the pipe, and nothing may block on it or break it."""
    os.write(1, f"{READY_PREFIX}{listening.url}\n".encode())
    os.dup2(2, 1)


def serve_task(task_ref: str, *, outputs_dir: Path, sandbox_backend: str = "auto", prompt: str = "",
               port: int = 0, token: str | None = None, linked: bool = False,
               on_ready: Callable[[Listening], None] = lambda _: None,
               command: str = "") -> tuple[RunStore, TrialRecord]:
    """Serve one trial of `task_ref` over streamable HTTP, grade it, store it as a one-trial run.

    `linked`: a worker behind a stdio relay; the client is gone when our stdin closes.
    """
    from cellprompt.mcp import require_sdk
    from cellprompt.runs.runner import create_run
    from cellprompt.runs.trial import execute_trial
    from cellprompt.tasks import load_task

    require_sdk()
    task = load_task(task_ref)
    model = "mcp:stdio" if linked else "mcp:http"
    spec = TrialSpec(trial_id=trial_id(prompt, task.id, model, 0), prompt_id="mcp-client",
                     prompt=prompt, task_id=task.id,
                     task_ref=str(Path(task_ref).resolve()) if Path(task_ref).exists() else task_ref,
                     model=model, sandbox_backend=sandbox_backend, task_kind=task.kind)
    store = create_run(outputs_dir, [spec], command=command,
                       config={"tasks": [task_ref], "models": [model], "replicates": 1})
    serving = _Serving()
    if linked:
        threading.Thread(target=_watch_pipe, args=(0, serving.client_gone), daemon=True).start()
    agent = partial(_play, serving=serving, port=port, token=token or secrets.token_urlsafe(32),
                    on_ready=on_ready)
    store.mark("running")
    try:
        record = execute_trial(spec, store.path, agent=agent)
        store.append_trial(record)
        store.mark("finished")
        serving.linger(LINGER_S)
    except BaseException:
        store.mark("interrupted")
        raise
    finally:
        if serving.http is not None:
            serving.http.stop()
    return store, record


def serve_stdio(worker_args: list[str]) -> int:
    """Serve over our stdin/stdout: start the linked worker, relay to it, return at EOF.

    `worker_args` are the `cellprompt mcp serve` options of the worker (task, sandbox…).
    """
    from cellprompt.mcp import require_sdk
    from cellprompt.mcp.bridge import relay_to

    require_sdk()
    token = secrets.token_urlsafe(32)
    worker = subprocess.Popen(
        [sys.executable, "-m", "cellprompt.cli.main", "mcp", "serve", "--transport", "http", "--linked",
         *worker_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "CELLPROMPT_MCP_TOKEN": token}, start_new_session=True)
    assert worker.stdout is not None and worker.stdin is not None
    url = _ready_url(worker)
    try:
        relay_to(url, {"Authorization": f"Bearer {token}"})
    finally:
        worker.stdin.close()  # the worker now knows the client is gone, grades and exits
    return 0


def _ready_url(worker: subprocess.Popen) -> str:
    """The worker's URL, from its first stdout line (it stops being read after that)."""
    box: list[str] = []

    def read() -> None:
        box.append(worker.stdout.readline().decode(errors="replace"))  # type: ignore[union-attr]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(WORKER_START_S)
    line = box[0] if box else ""
    if not line.startswith(READY_PREFIX):
        worker.wait(timeout=30) if box else None
        raise CellpromptError("the MCP trial server did not start (its error is above)"
                              if worker.poll() else "the MCP trial server did not start in time")
    return line[len(READY_PREFIX):].strip()
