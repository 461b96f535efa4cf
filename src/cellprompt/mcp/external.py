"""`--model agent:"COMMAND"`: one trial played by an external agent through the MCP server.

The agent (Claude Code, Codex CLI, any MCP client) is a program we run once per
trial; it reaches the trial's sandbox only through cellprompt's MCP server, which
applies the built-in loop's limits and records every tool call (`cellprompt.mcp`).
The command is a shell command line; these words in it are replaced by quoted paths
(and also exported as environment variables):

    {mcp_config}        CELLPROMPT_MCP_CONFIG        JSON `mcpServers` config: streamable HTTP + token
    {mcp_stdio_config}  CELLPROMPT_MCP_STDIO_CONFIG  the same server as a stdio command (a relay)
    {prompt_file}       CELLPROMPT_PROMPT_FILE       the prompt under test: the agent's system text
    {task_file}         CELLPROMPT_TASK_FILE         the task: objective, data, answer format
    {mcp_url}           CELLPROMPT_MCP_URL           the server's URL (token: CELLPROMPT_MCP_TOKEN)

The agent runs on the host in an empty scratch folder, in its own process group,
killed at the task's wall time or soon after the trial ends (an answer, a limit).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from cellprompt.agent.loop import AgentLimits, AgentOutcome, run_agent
from cellprompt.records.run import Turn
from cellprompt.sandbox.base import Sandbox

AFTER_END_S = 10.0  # once the trial is over, the agent gets this long to exit by itself
KILL_WAIT_S = 5.0  # between SIGTERM and SIGKILL
OUTPUT_TAIL_CHARS = 20_000  # of the agent's stdout kept as its final message
ERROR_TAIL_CHARS = 800  # of its stderr quoted when it fails


def runner_for(model: Any) -> Callable[..., AgentOutcome]:
    """The loop that plays a trial for this model: ours, or an external agent's."""
    return run_external if getattr(model, "provider", None) == "agent" else run_agent


def agent_files(folder: Path, *, url: str, token: str, system_prompt: str, task_text: str) -> dict[str, Path]:
    """The files an agent command is given, written into its private (0700) folder."""
    server = {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
    paths = {name: folder / file for name, file in (
        ("mcp_config", "mcp.json"), ("mcp_stdio_config", "mcp-stdio.json"),
        ("prompt_file", "prompt.md"), ("task_file", "task.md"))}
    paths["mcp_config"].write_text(json.dumps({"mcpServers": {"cellprompt": server}}, indent=2))
    relay = {"command": sys.executable,
             "args": ["-m", "cellprompt.mcp.bridge", str(paths["mcp_config"])]}
    paths["mcp_stdio_config"].write_text(json.dumps({"mcpServers": {"cellprompt": relay}}, indent=2))
    paths["prompt_file"].write_text(system_prompt, encoding="utf-8")
    paths["task_file"].write_text(task_text, encoding="utf-8")
    for path in paths.values():
        path.chmod(0o600)
    return paths


def expand(command: str, paths: dict[str, Path], url: str) -> str:
    """The command with its placeholders replaced by shell-quoted values."""
    for name, path in paths.items():
        command = command.replace("{" + name + "}", shlex.quote(str(path)))
    return command.replace("{mcp_url}", shlex.quote(url))


def _tail(path: Path, chars: int) -> str:
    with suppress(OSError), path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - chars * 4))
        return fh.read().decode("utf-8", errors="replace")[-chars:].strip()
    return ""


def _stop_group(proc: subprocess.Popen) -> None:
    """End the agent and everything it started (its own session: nothing else is touched)."""
    for sig, wait in ((signal.SIGTERM, KILL_WAIT_S), (signal.SIGKILL, KILL_WAIT_S)):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def _supervise(proc: subprocess.Popen, session: Any) -> int | None:
    """Wait for the agent to exit, the trial to end, or a limit; the agent's exit code if it exited."""
    ended_at: float | None = None
    while True:
        code = proc.poll()
        if code is not None:
            return code
        session.check_limits()
        if session.done.is_set():
            ended_at = ended_at or time.monotonic()
            grace = AFTER_END_S if session.outcome_status() == "submitted" else 1.0
            if time.monotonic() - ended_at > grace:
                _stop_group(proc)
                return None
        time.sleep(0.05)


def run_external(*, system_prompt: str, first_message: str, model: Any, sandbox: Sandbox,
                 limits: AgentLimits, save_image: Callable[[str], str],
                 should_stop: Callable[[], bool] = lambda: False, open_ended: bool = False) -> AgentOutcome:
    """Run the agent command against this trial's sandbox; same arguments as `run_agent`."""
    from cellprompt.mcp import require_sdk

    require_sdk()
    from cellprompt.mcp.server import HttpServer, build_server
    from cellprompt.mcp.session import TrialSession

    session = TrialSession(sandbox=sandbox, limits=limits, save_image=save_image, should_stop=should_stop)
    token = secrets.token_urlsafe(32)
    http = HttpServer(build_server(session, first_message), session, token=token)
    http.start()
    stdout_tail = ""
    try:
        with tempfile.TemporaryDirectory(prefix="cellprompt-agent-") as tmp:
            folder = Path(tmp)
            paths = agent_files(folder, url=http.url, token=token, system_prompt=system_prompt,
                                task_text=first_message)
            work = folder / "work"
            work.mkdir()
            env = {**os.environ, "CELLPROMPT_MCP_URL": http.url, "CELLPROMPT_MCP_TOKEN": token,
                   **{f"CELLPROMPT_{name.upper()}": str(path) for name, path in paths.items()}}
            with (folder / "stdout").open("wb") as out, (folder / "stderr").open("wb") as err:
                proc = subprocess.Popen(["/bin/sh", "-c", expand(model.command, paths, http.url)],
                                        cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=err, start_new_session=True)
                try:
                    code = _supervise(proc, session)
                finally:
                    if proc.poll() is None:
                        _stop_group(proc)
            stdout_tail = _tail(folder / "stdout", OUTPUT_TAIL_CHARS)
            if code is not None and not session.done.is_set():
                why = f"the agent command exited with code {code} without submitting an answer"
                stderr_tail = _tail(folder / "stderr", ERROR_TAIL_CHARS)
                session.finish("error", error=f"{why}: {stderr_tail}" if stderr_tail else why)
    finally:
        http.stop()
    outcome = session.outcome()
    if stdout_tail:  # the agent's last words (its report, for open analyses), after its tool calls
        outcome.turns.append(Turn(index=len(outcome.turns), assistant_text=stdout_tail))
    return outcome
