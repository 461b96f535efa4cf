"""One trial's tool calls, whichever MCP client makes them, recorded like the built-in loop's.

The built-in loop (`cellprompt.agent.loop`) decides what a model may do; this class
applies the same rules to an agent we do not control: the same sandbox and
execution timeout, the same code-execution budget and wall time, the same feedback
text and answer errors. Each tool call becomes one `Turn` holding that call, its
execution and the text sent back, so notebooks, the judge and the report read an
external agent's trial like any other.

Everything the client sends is hostile: arguments are checked here, sizes capped,
paths handed to the sandbox (which confines them to /workspace) and nothing else.
The class is synchronous and thread-safe: the MCP server calls it from worker threads.
"""

from __future__ import annotations

import copy
import json
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellprompt.agent.formatting import describe_result, head_tail
from cellprompt.agent.loop import AgentLimits, AgentOutcome, execution_record
from cellprompt.agent.tools import EXECUTE, SUBMIT, coerce_answer
from cellprompt.errors import CellpromptError, SandboxDiedError
from cellprompt.llm.base import ToolCall, Usage
from cellprompt.records.run import LimitName, TrialStatus, Turn
from cellprompt.sandbox.base import ExecutionResult, Sandbox

LIST_FILES = "list_files"
READ_FILE = "read_file"
TOOL_NAMES = (EXECUTE, LIST_FILES, READ_FILE, SUBMIT)

MAX_CODE_CHARS = 1_000_000  # one cell; a bigger one is a flood, not analysis
MAX_ANSWER_BYTES = 1_000_000
MAX_PATH_CHARS = 1024
READ_CAP_BYTES = 4 << 20  # read_file never pulls more than this from the sandbox
RAW_ARGS_CHARS = 20_000  # what the record keeps of a call's raw arguments
CALLS_PER_TURN = 10  # an external agent's tool calls are capped at max_turns × this
_OVER_CAP = re.compile(r"^(.*) \((\d+) bytes: over the copy cap\)$")


@dataclass
class ToolReply:
    """What goes back to the client: text (as the built-in loop words it), figures, error flag."""

    text: str
    images: list[str] = field(default_factory=list)  # base64 PNGs
    is_error: bool = False


class TrialSession:
    """The tools of one trial over one sandbox; `outcome()` is the record of what happened."""

    def __init__(self, *, sandbox: Sandbox, limits: AgentLimits, save_image: Callable[[str], str],
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.sandbox, self.limits = sandbox, limits
        self.save_image, self.should_stop = save_image, should_stop
        self._outcome = AgentOutcome(status="error", usage=Usage(cost_unknown=True))
        self._state = threading.Lock()  # guards the outcome's end state and the turn list
        self._busy = threading.Lock()  # one tool call at a time: there is one kernel
        self.done = threading.Event()
        self.started = time.monotonic()
        self.executions = 0
        self.calls = 0

    # -- the end of the trial ------------------------------------------------------------------

    def remaining_s(self) -> float:
        return self.limits.wall_time_s - (time.monotonic() - self.started)

    def finish(self, status: TrialStatus, limit: LimitName | None = None, error: str | None = None) -> bool:
        """End the trial once; the first reason wins. True when this call ended it."""
        with self._state:
            if self.done.is_set():
                return False
            o = self._outcome
            o.status, o.limit, o.error = status, limit, error
            self.done.set()
            return True

    def outcome_status(self) -> TrialStatus:
        with self._state:
            return self._outcome.status

    def check_limits(self) -> None:
        """End the trial if the wall time is spent or the run was stopped (called by watchers too)."""
        if self.should_stop():
            self.finish("error", error="stopped: the run was interrupted")
        elif self.remaining_s() <= 0:
            self.finish("limit_reached", "wall_time")

    def outcome(self, wait_s: float = 30.0) -> AgentOutcome:
        """The outcome, after any call in flight has been recorded (waiting at most `wait_s`)."""
        if not self.done.is_set():
            self.finish("error", error="the agent ended without submitting an answer")
        got = self._busy.acquire(timeout=wait_s)
        try:
            with self._state:
                return copy.deepcopy(self._outcome)
        finally:
            if got:
                self._busy.release()

    def _over(self) -> ToolReply:
        o = self._outcome
        why = {"submitted": "an answer was submitted"}.get(o.status) or o.limit or o.error or o.status
        return ToolReply(f"error: the trial is over ({why}); no more tool calls are accepted", is_error=True)

    # -- tool calls ----------------------------------------------------------------------------

    def call(self, name: str, arguments: Any) -> ToolReply:
        """Run one tool call and record it as one turn."""
        self.check_limits()
        with self._busy:
            self.check_limits()
            if self.done.is_set():
                return self._over()
            self.calls += 1
            if self.calls > self.limits.max_turns * CALLS_PER_TURN:
                self.finish("limit_reached", "max_turns")
                return self._over()
            args = arguments if isinstance(arguments, dict) else None
            with self._state:
                turn = Turn(index=len(self._outcome.turns),
                            tool_calls=[_tool_call(self.calls, name, arguments)])
                self._outcome.turns.append(turn)
            t0 = time.monotonic()
            try:
                reply = self._dispatch(name, args, turn)
            finally:
                turn.latency_s = time.monotonic() - t0
            turn.feedback = reply.text
            return reply

    def _dispatch(self, name: str, args: dict[str, Any] | None, turn: Turn) -> ToolReply:
        if name == EXECUTE:
            return self._execute(args or {}, turn)
        if name == SUBMIT:
            return self._submit(args or {})
        if name == LIST_FILES:
            return self._list_files()
        if name == READ_FILE:
            return self._read_file(args or {})
        return _error(f"unknown tool {str(name)[:100]!r}; the tools are {', '.join(TOOL_NAMES)}")

    def _execute(self, args: dict[str, Any], turn: Turn) -> ToolReply:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            return _error("execute_python needs a non-empty string argument `code`")
        if len(code) > MAX_CODE_CHARS:
            return _error(f"`code` is over {MAX_CODE_CHARS} characters: run smaller cells")
        requested = args.get("timeout")
        if requested is not None and (isinstance(requested, bool) or not isinstance(requested, (int, float))
                                      or not math.isfinite(requested) or requested <= 0):
            return _error("`timeout` must be a positive number of seconds")
        if self.executions >= self.limits.max_code_executions:
            self.finish("limit_reached", "max_code_executions")
            return _error(f"the limit of {self.limits.max_code_executions} code executions is reached: "
                          "the trial is over")
        self.executions += 1
        timeout = min(self.limits.execution_timeout_s, self.remaining_s(), requested or math.inf)
        t0 = time.monotonic()
        try:
            result = self.sandbox.execute(code, timeout=max(1.0, timeout))
        except SandboxDiedError as exc:
            result = ExecutionResult(final_status="died", message=str(exc), state_lost=True)
        self._outcome.exec_s += time.monotonic() - t0
        turn.executions.append(execution_record(code, result, self.save_image))
        images = result.images() if self.limits.send_images else []
        text = describe_result(result, limit=self.limits.feedback_chars,
                               images_sent=bool(images) or not result.images())
        if self.executions >= self.limits.max_code_executions:
            text += (f"\n[that was the last of {self.limits.max_code_executions} code executions: "
                     "submit your answer now]")
        return ToolReply(text, images, is_error=result.final_status != "ok")

    def _submit(self, args: dict[str, Any]) -> ToolReply:
        answer, problem = coerce_answer(args.get("answer", args))  # the built-in loop's own rule
        if answer is None:
            return _error(str(problem))
        try:
            size = len(json.dumps(answer))
        except (TypeError, ValueError):
            return _error("`answer` must be a JSON object with the answer fields")
        if size > MAX_ANSWER_BYTES:
            return _error(f"the answer is over {MAX_ANSWER_BYTES} bytes: submit the fields asked for")
        with self._state:
            self._outcome.answer = answer
        self.finish("submitted")
        return ToolReply("answer submitted: the trial is over and will be graded")

    def _list_files(self) -> ToolReply:
        """The workspace's files and sizes, from the sandbox's archive (no file content copied)."""
        with tempfile.TemporaryDirectory(prefix="cellprompt-ls-") as tmp:
            try:
                skipped = self.sandbox.export_workspace(Path(tmp) / "w", 0)
            except CellpromptError as exc:
                return _error(f"cannot list /workspace: {exc}")
            root = Path(tmp) / "w"
            entries: dict[str, str] = {}
            for path in sorted(root.rglob("*")) if root.exists() else []:
                rel = str(path.relative_to(root))
                if path.is_symlink():
                    entries[rel] = "symlink"
                elif path.is_dir():
                    entries[rel + "/"] = "folder"
                else:
                    entries[rel] = f"{path.stat().st_size} bytes"
        for line in skipped:
            m = _OVER_CAP.match(line)
            if m:
                entries[m.group(1)] = f"{m.group(2)} bytes"
        if not entries:
            return ToolReply("/workspace is empty")
        listing = "\n".join(f"/workspace/{name}  ({what})" for name, what in sorted(entries.items()))
        if len(skipped) >= 100:
            listing += "\n[the listing may be incomplete: list the folder with execute_python]"
        return ToolReply(head_tail(listing, self.limits.feedback_chars))

    def _read_file(self, args: dict[str, Any]) -> ToolReply:
        path = args.get("path")
        if not isinstance(path, str) or not path.strip() or len(path) > MAX_PATH_CHARS or "\x00" in path:
            return _error("read_file needs a string argument `path`: a file under /workspace")
        try:
            data = _read_capped(self.sandbox, path.strip())
        except FileNotFoundError:
            return _error(f"{path} is not a file in /workspace")
        except CellpromptError as exc:
            return _error(f"cannot read {path}: {exc}")
        if data.startswith(b"\x89PNG\r\n\x1a\n") and self.limits.send_images:
            import base64

            return ToolReply(f"{path}: PNG image, {len(data)} bytes", [base64.b64encode(data).decode()])
        if b"\x00" in data[:8192]:
            return ToolReply(f"{path}: binary file of {len(data)} bytes; inspect it with execute_python")
        return ToolReply(head_tail(data.decode("utf-8", errors="replace"), self.limits.feedback_chars))


def _read_capped(sandbox: Sandbox, path: str) -> bytes:
    try:
        return sandbox.read_file(path, max_bytes=READ_CAP_BYTES)  # type: ignore[call-arg]
    except TypeError:  # a sandbox without the cap argument
        return sandbox.read_file(path)


def _error(problem: str) -> ToolReply:
    return ToolReply(f"error: {problem}", is_error=True)


def _tool_call(n: int, name: Any, arguments: Any) -> ToolCall:
    """The call as the record keeps it (raw arguments capped: the client is not trusted)."""
    try:
        raw = json.dumps(arguments, default=str)
    except (TypeError, ValueError):
        raw = repr(arguments)
    args = arguments if isinstance(arguments, dict) else None
    problem = None if args is not None else "the arguments were not a JSON object"
    if len(raw) > MAX_CODE_CHARS + RAW_ARGS_CHARS:
        args, problem = None, f"arguments of {len(raw)} characters, not kept"
    if len(raw) > RAW_ARGS_CHARS:
        raw = raw[:RAW_ARGS_CHARS] + "…"
    return ToolCall(id=f"mcp-{n}", name=str(name)[:200], arguments=args, raw_arguments=raw,
                    parse_error=problem)
