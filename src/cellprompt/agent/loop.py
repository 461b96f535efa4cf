"""The agent loop: the model writes code, the sandbox runs it, until an answer or a limit.

Every path out of the loop is a recorded state (`submitted`, `limit_reached` with
the limit, or `error` with the reason); nothing here raises for the model's
misbehaviour, because a badly behaved model is exactly what a benchmark measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cellprompt.agent.formatting import DEFAULT_FEEDBACK_CHARS, describe_result
from cellprompt.agent.tools import EXECUTE, SUBMIT, TOOLS, code_blocks, coerce_answer, eval_answer
from cellprompt.errors import CellpromptError, SandboxDiedError
from cellprompt.llm.base import ChatModel, Message, Usage
from cellprompt.records.run import ExecutionRecord, LimitName, Limits, TrialStatus, Turn
from cellprompt.sandbox.base import ExecutionResult, Sandbox

TEXT_MODE_HELP = (
    "Write Python in ```python fenced blocks (every block runs, in order). "
    "When done, reply with <EVAL_ANSWER>{\"field\": value, ...}</EVAL_ANSWER>."
)
TOOL_MODE_HELP = "Call execute_python to run code, or submit_answer with the answer object to finish."


@dataclass
class AgentLimits:
    max_code_executions: int = 10
    max_turns: int = 20
    max_output_tokens: int = 4096
    max_cost_usd: float | None = None
    wall_time_s: float = 900.0
    execution_timeout_s: float = 300.0
    send_images: bool = True
    feedback_chars: int = DEFAULT_FEEDBACK_CHARS

    @classmethod
    def from_limits(cls, limits: Limits) -> AgentLimits:
        """The loop's limits from a trial's merged `Limits` (fields left unset keep these defaults)."""
        return cls(**limits.model_dump(exclude_none=True))


@dataclass
class AgentOutcome:
    status: TrialStatus
    limit: LimitName | None = None
    error: str | None = None
    answer: dict[str, Any] | None = None
    turns: list[Turn] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model_s: float = 0.0
    exec_s: float = 0.0


def execution_record(code: str, result: ExecutionResult,
                     save_image: Callable[[str], str]) -> ExecutionRecord:
    """How one execution is kept in a trial record (figures saved as artifacts); shared with the
    MCP server so an external agent's executions are recorded exactly like the loop's."""
    outputs: list[dict[str, Any]] = []
    paths: list[str] = []
    for out in result.outputs:
        data = out.get("data")
        if isinstance(data, dict) and "image/png" in data:
            path = save_image(data["image/png"])
            paths.append(path)
            out = {**out, "data": {**data, "image/png": path}}
        outputs.append(out)
    return ExecutionRecord(code=code, outputs=outputs, final_status=result.final_status,
                           execution_count=result.execution_count, duration_s=result.duration_s,
                           message=result.message, images=paths)


class _Stop(Exception):
    """Internal: ends the loop with a recorded state."""

    def __init__(self, status: TrialStatus, limit: LimitName | None = None, error: str | None = None):
        super().__init__(error or limit or status)
        self.status, self.limit, self.error = status, limit, error


class AgentLoop:
    """One conversation; `run()` returns its outcome."""

    def __init__(self, *, system_prompt: str, first_message: str, model: ChatModel, sandbox: Sandbox,
                 limits: AgentLimits, save_image: Callable[[str], str],
                 should_stop: Callable[[], bool] = lambda: False, open_ended: bool = False) -> None:
        self.model, self.sandbox, self.limits = model, sandbox, limits
        # open analyses end with a written report: a plain reply after some code is that report
        self.open_ended = open_ended
        self.save_image, self.should_stop = save_image, should_stop
        self.messages = [Message(role="system", content=system_prompt),
                         Message(role="user", content=first_message)]
        self.outcome = AgentOutcome(status="error")
        self.executions = 0
        self.started = time.monotonic()

    # -- limits -----------------------------------------------------------------------------

    def _remaining_s(self) -> float:
        return self.limits.wall_time_s - (time.monotonic() - self.started)

    def _check_budget(self) -> None:
        if self.should_stop():
            raise _Stop("error", error="stopped: the run was interrupted")
        if len(self.outcome.turns) >= self.limits.max_turns:
            raise _Stop("limit_reached", "max_turns")
        if self._remaining_s() <= 0:
            raise _Stop("limit_reached", "wall_time")
        cap = self.limits.max_cost_usd
        if cap is not None and self.outcome.usage.cost_usd >= cap:
            raise _Stop("limit_reached", "max_cost")

    # -- execution --------------------------------------------------------------------------

    def _execute(self, code: str, turn: Turn) -> tuple[str, list[str]]:
        """Run one cell; return the feedback text and the images for the model."""
        if self.executions >= self.limits.max_code_executions:
            raise _Stop("limit_reached", "max_code_executions")
        self.executions += 1
        timeout = max(1.0, min(self.limits.execution_timeout_s, self._remaining_s()))
        t0 = time.monotonic()
        try:
            result = self.sandbox.execute(code, timeout=timeout)
        except SandboxDiedError as exc:
            result = ExecutionResult(final_status="died", message=str(exc), state_lost=True)
        self.outcome.exec_s += time.monotonic() - t0
        turn.executions.append(self._record(code, result))
        images = result.images() if self.limits.send_images and self.model.supports_images else []
        text = describe_result(result, limit=self.limits.feedback_chars,
                               images_sent=bool(images) or not result.images())
        if self.executions >= self.limits.max_code_executions:
            text += (f"\n[that was the last of {self.limits.max_code_executions} code executions: "
                     "submit your answer now]")
        return text, images

    def _record(self, code: str, result: ExecutionResult) -> ExecutionRecord:
        return execution_record(code, result, self.save_image)

    # -- turns ------------------------------------------------------------------------------

    def _call_model(self, turn: Turn) -> Message:
        tools = TOOLS if self.model.supports_tools else None
        t0 = time.monotonic()
        try:
            reply = self.model.complete(self.messages, tools=tools,
                                        max_tokens=self.limits.max_output_tokens)
        except CellpromptError as exc:
            raise _Stop("error", error=f"model call failed: {exc}") from exc
        finally:
            self.outcome.model_s += time.monotonic() - t0
        turn.assistant_text = reply.message.content
        turn.tool_calls = list(reply.message.tool_calls)
        turn.usage, turn.latency_s, turn.stop_reason = reply.usage, reply.latency_s, reply.stop_reason
        self.outcome.usage = self.outcome.usage + reply.usage
        self.messages.append(reply.message)
        return reply.message

    def _tool_turn(self, msg: Message, turn: Turn) -> None:
        feedback: list[str] = []
        try:
            for call in msg.tool_calls:
                images: list[str] = []
                if call.arguments is None:
                    text = (f"error: the arguments of {call.name} were not valid JSON "
                            f"({call.parse_error}); call it again with a JSON object")
                elif call.name == EXECUTE:
                    code = call.arguments.get("code")
                    if not isinstance(code, str) or not code.strip():
                        text = "error: execute_python needs a non-empty string argument `code`"
                    else:
                        text, images = self._execute(code, turn)
                elif call.name == SUBMIT:
                    answer, problem = coerce_answer(call.arguments.get("answer", call.arguments))
                    if answer is not None:
                        self.outcome.answer = answer
                        raise _Stop("submitted")
                    text = f"error: {problem}"
                else:
                    text = f"error: unknown tool {call.name!r}; the tools are {EXECUTE} and {SUBMIT}"
                feedback.append(text)
                self.messages.append(Message(role="tool", tool_call_id=call.id, content=text,
                                             images=images))
        finally:
            turn.feedback = "\n\n".join(feedback)

    def _text_turn(self, msg: Message, turn: Turn) -> None:
        blocks = code_blocks(msg.content)
        answer, problem = eval_answer(msg.content)
        parts: list[str] = []
        images: list[str] = []
        try:
            for block in blocks:
                text, imgs = self._execute(block, turn)
                parts.append(f"Code execution result:\n{text}")
                images.extend(imgs)
        finally:
            turn.feedback = "\n\n".join(parts)
        if answer is not None:
            self.outcome.answer = answer
            raise _Stop("submitted")
        if self.open_ended and not blocks and not problem and self.executions and msg.content.strip():
            self.outcome.answer = {"report": msg.content}
            raise _Stop("submitted")
        if problem:
            parts.append(f"error: {problem}")
        if not blocks and not problem:
            if self.model.supports_tools and not msg.tool_calls:
                parts.append(f"No tool was called. {TOOL_MODE_HELP}")
            else:
                parts.append(f"No code was found. {TEXT_MODE_HELP}")
        turn.feedback = "\n\n".join(parts)
        self.messages.append(Message(role="user", content=turn.feedback, images=images))

    def run(self) -> AgentOutcome:
        try:
            while True:
                self._check_budget()
                turn = Turn(index=len(self.outcome.turns))
                self.outcome.turns.append(turn)
                msg = self._call_model(turn)
                if msg.tool_calls:
                    self._tool_turn(msg, turn)
                else:
                    if turn.stop_reason in ("max_tokens", "length") and not code_blocks(msg.content):
                        raise _Stop("limit_reached", "max_output_tokens")
                    self._text_turn(msg, turn)
        except _Stop as stop:
            self.outcome.status, self.outcome.limit, self.outcome.error = (
                stop.status, stop.limit, stop.error)
        return self.outcome


def run_agent(**kwargs: Any) -> AgentOutcome:
    """Run one conversation to a recorded end state; see `AgentLoop` for the arguments."""
    return AgentLoop(**kwargs).run()
