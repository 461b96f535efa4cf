"""Tool-call arguments arrive as JSON text that models sometimes get wrong.

A malformed call becomes a `ToolCall` with `arguments=None` and a `parse_error` the
agent loop tells the model about, so one bad reply never ends a trial.
"""

from __future__ import annotations

import json
from typing import Any

from cellprompt.llm.base import ToolCall


def parse_tool_call(call_id: str, name: str, raw: str | None) -> ToolCall:
    """Build a `ToolCall` from the provider's raw argument text."""
    raw = raw or ""
    if not raw.strip():
        return ToolCall(id=call_id, name=name, arguments={}, raw_arguments=raw)
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ToolCall(id=call_id, name=name, raw_arguments=raw,
                        parse_error=f"arguments are not valid JSON: {exc.msg} at char {exc.pos}")
    if not isinstance(value, dict):
        return ToolCall(id=call_id, name=name, raw_arguments=raw,
                        parse_error=f"arguments must be a JSON object, got {type(value).__name__}")
    return ToolCall(id=call_id, name=name, arguments=value, raw_arguments=raw)


def arguments_json(call: ToolCall) -> str:
    """The argument text to send back in the conversation history."""
    if call.raw_arguments:
        return call.raw_arguments
    return json.dumps(call.arguments or {})
