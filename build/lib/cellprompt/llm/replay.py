"""`replay:FILE`: scripted replies from YAML or JSON, for demos and tests without a network.

The file is a list of replies, or a mapping::

    tools: true              # false: a model without tool support (fenced code, <EVAL_ANSWER>)
    when_exhausted: error    # or repeat_last
    replies:
      - text: "Let me look at the data."
        tool_calls:
          - name: execute_python
            arguments: {code: "print(adata)"}
      - code: "print(1 + 1)"             # shorthand for an execute_python call / a fenced block
      - answer: {n_clusters: 8}          # shorthand for submit_answer / an <EVAL_ANSWER> block
      - tool_calls: [{name: execute_python, raw_arguments: '{"code": '}]  # malformed on purpose

The reply played is the one after the assistant turns already in the conversation,
so the model keeps no state and one instance can serve parallel trials.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cellprompt.errors import ModelError
from cellprompt.llm.base import ChatReply, Message, ToolCall, ToolSpec, Usage
from cellprompt.llm.reference import EXECUTE, SUBMIT
from cellprompt.llm.toolcalls import parse_tool_call


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] | None = None
    raw_arguments: str | None = None  # sent as is, so malformed JSON can be scripted

    @model_validator(mode="after")
    def _one_form(self) -> ScriptedCall:
        if self.arguments is not None and self.raw_arguments is not None:
            raise ValueError("give `arguments` or `raw_arguments`, not both")
        return self


class ScriptedReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = ""
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    code: str | None = None
    answer: Any = None
    input_tokens: int = 0
    output_tokens: int = 0


class ReplayScript(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: bool = True
    when_exhausted: Literal["error", "repeat_last"] = "error"
    replies: list[ScriptedReply]

    @model_validator(mode="after")
    def _consistent(self) -> ReplayScript:
        if not self.replies:
            raise ValueError("`replies` is empty")
        if not self.tools and any(r.tool_calls for r in self.replies):
            raise ValueError("`tool_calls` given but `tools: false`; use `code`/`answer`/`text`")
        return self


def load_script(path: Path) -> ReplayScript:
    """Read and validate a replay file (YAML is a superset of JSON, so one parser reads both)."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"replay file {path} does not exist: check the path after `replay:`") \
            from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ModelError(f"replay file {path} is not valid YAML/JSON{where}: {problem}") from None
    if isinstance(data, list):
        data = {"replies": data}
    try:
        return ReplayScript.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"replay file {path}: {where}: {first['msg']}") from None


class ReplayModel:
    """Plays a `ReplayScript` one reply per assistant turn."""

    provider = "replay"
    supports_images = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = f"replay:{path}"
        self.script = load_script(path)
        self.supports_tools = self.script.tools

    def complete(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 max_tokens: int | None = None, temperature: float | None = None,
                 response_schema: dict[str, Any] | None = None) -> ChatReply:
        turn = sum(1 for m in messages if m.role == "assistant")
        replies = self.script.replies
        if turn >= len(replies):
            if self.script.when_exhausted == "error":
                raise ModelError(f"replay file {self.path} has {len(replies)} replies and turn "
                                 f"{turn + 1} was asked for: add replies or `when_exhausted: "
                                 "repeat_last`")
            turn = len(replies) - 1
        reply = replies[turn]
        message = self._message(reply, turn)
        return ChatReply(
            message=message,
            usage=Usage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens),
            stop_reason="tool_use" if message.tool_calls else "end_turn",
            model="replay",
        )

    def _message(self, reply: ScriptedReply, turn: int) -> Message:
        text = reply.text
        calls: list[ToolCall] = []
        for i, call in enumerate(reply.tool_calls):
            raw = call.raw_arguments if call.raw_arguments is not None \
                else json.dumps(call.arguments or {})
            calls.append(parse_tool_call(f"replay_{turn}_{i}", call.name, raw))
        extra: list[tuple[str, dict[str, Any]]] = []
        if reply.code is not None:
            extra.append((EXECUTE, {"code": reply.code}))
        if reply.answer is not None:
            extra.append((SUBMIT, {"answer": reply.answer}))
        for name, args in extra:
            if self.script.tools:
                calls.append(parse_tool_call(f"replay_{turn}_{len(calls)}", name,
                                             json.dumps(args)))
            elif name == EXECUTE:
                text += f"\n\n```python\n{args['code']}\n```\n"
            else:
                text += f"\n\n<EVAL_ANSWER>{json.dumps(args['answer'])}</EVAL_ANSWER>\n"
        return Message(role="assistant", content=text.strip("\n"), tool_calls=calls)
