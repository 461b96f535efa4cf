"""`reference`: the task's reference solution played through the agent loop.

It is the oracle baseline: if the reference cannot pass a task through the same
loop, sandbox and graders as a model, the task (not the model) is broken. The
model keeps no state: which cell comes next is read from the conversation.
"""

from __future__ import annotations

import json
from typing import Any

from cellprompt.errors import ModelError
from cellprompt.llm.base import ChatReply, Message, ToolCall, ToolSpec

EXECUTE = "execute_python"
SUBMIT = "submit_answer"


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last line of `text` that is a JSON object (status lines may follow it)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


class ReferenceModel:
    """Replies with one `execute_python` call per cell, then `submit_answer` with the printed JSON."""

    spec = "reference"
    provider = "reference"
    supports_tools = True
    supports_images = False  # it never looks at figures; the loop can skip encoding them

    def __init__(self, cells: list[str]) -> None:
        if not cells:
            raise ModelError("the reference model needs the task's reference solution: "
                             "the task has no reference cells")
        self.cells = list(cells)

    def complete(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 max_tokens: int | None = None, temperature: float | None = None,
                 response_schema: dict[str, Any] | None = None) -> ChatReply:
        played = sum(1 for m in messages if m.role == "assistant"
                     for c in m.tool_calls if c.name == EXECUTE)
        if played < len(self.cells):
            code = self.cells[played]
            call = ToolCall(id=f"ref_{played}", name=EXECUTE, arguments={"code": code},
                            raw_arguments=json.dumps({"code": code}))
            return ChatReply(message=Message(role="assistant", tool_calls=[call]),
                             stop_reason="tool_use", model="reference")
        results = [m for m in messages if m.role == "tool"]
        answer = last_json_object(results[-1].content) if results else None
        if answer is None:
            raise ModelError("reference solution: its last cell printed no JSON object on its "
                             "last line; end it with print(json.dumps(answer))")
        call = ToolCall(id=f"ref_{played}", name=SUBMIT, arguments={"answer": answer},
                        raw_arguments=json.dumps({"answer": answer}))
        return ChatReply(message=Message(role="assistant", tool_calls=[call]),
                         stop_reason="tool_use", model="reference")
