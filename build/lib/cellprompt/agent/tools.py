"""The two tools the agent gets, and their text-mode equivalents for models without tools."""

from __future__ import annotations

import json
import re
from typing import Any

from cellprompt.llm.base import ToolSpec

EXECUTE = "execute_python"
SUBMIT = "submit_answer"

TOOLS = [
    ToolSpec(
        name=EXECUTE,
        description=("Run Python code in a persistent Jupyter kernel (state is kept between calls). "
                     "Datasets are read-only under /data; the working directory is /workspace. "
                     "Returns printed output, errors and figures."),
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source to run"}},
            "required": ["code"],
        },
    ),
    ToolSpec(
        name=SUBMIT,
        description="Submit the final answer as a JSON object with the requested fields. Ends the task.",
        parameters={
            "type": "object",
            "properties": {"answer": {"type": "object", "description": "the answer fields"}},
            "required": ["answer"],
        },
    ),
]

_FENCE = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_EVAL_ANSWER = re.compile(r"<EVAL_ANSWER>(.*?)</EVAL_ANSWER>", re.DOTALL)


def code_blocks(text: str) -> list[str]:
    """Every fenced python block of a reply, in order (the original ran only the first)."""
    return [block.strip("\n") for block in _FENCE.findall(text) if block.strip()]


def eval_answer(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The `<EVAL_ANSWER>{json}</EVAL_ANSWER>` block of a reply: (answer, error)."""
    matches = _EVAL_ANSWER.findall(text)
    if not matches:
        return None, None
    raw = matches[-1].strip()
    raw = re.sub(r"^```(?:json)?\s*|\s*```$", "", raw)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"the <EVAL_ANSWER> block is not valid JSON ({exc.msg} at char {exc.pos})"
    if not isinstance(value, dict):
        return None, "the <EVAL_ANSWER> block must hold a JSON object with the answer fields"
    return value, None


def coerce_answer(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Accept an object, or a JSON string holding one (some models double-encode)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None, "`answer` must be a JSON object with the answer fields, not a string"
    if not isinstance(value, dict):
        return None, "`answer` must be a JSON object with the answer fields"
    return value, None
