"""Provider-neutral scripted responses for the fake LLM servers.

A test queues these (or installs a policy returning them); each fake server
renders them in its provider's wire format, so one script drives both.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class Call:
    """A tool call; `raw` sends the argument text verbatim (to script malformed JSON)."""

    name: str
    arguments: dict[str, Any] | None = None
    raw: str | None = None
    id: str = field(default_factory=lambda: f"call_{next(_ids)}")

    def argument_text(self) -> str:
        return self.raw if self.raw is not None else json.dumps(self.arguments or {})


@dataclass
class Reply:
    """A successful completion."""

    text: str = ""
    tool_calls: list[Call] = field(default_factory=list)
    input_tokens: int = 100
    output_tokens: int = 20
    cached_tokens: int = 0
    stop: str | None = None  # default: tool use when there are calls, else end of turn
    model: str | None = None  # default: the model the request named


@dataclass
class Error:
    """An HTTP error with the provider's error body, e.g. 429 with `Retry-After`."""

    status: int
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Wait `seconds` before answering `then`, or drop the connection if `then` is None."""

    seconds: float
    then: Reply | Error | None = None


Response = Reply | Error | Hang


@dataclass
class FakeRequest:
    """One request as received, with a provider-neutral view for policies and assertions."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    system: str = ""  # the system prompt text
    turn: int = 0  # assistant messages already in the conversation
    user_texts: list[str] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)  # text of each tool result, in order
    image_count: int = 0  # images anywhere in the conversation
    tool_names: list[str] = field(default_factory=list)  # tools offered

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def last_tool_result(self) -> str | None:
        return self.tool_results[-1] if self.tool_results else None

    @property
    def last_user_text(self) -> str | None:
        return self.user_texts[-1] if self.user_texts else None


Policy = Callable[[FakeRequest], Response]


def execute(code: str) -> Call:
    """An `execute_python` tool call."""
    return Call("execute_python", {"code": code})


def submit(answer: Any) -> Call:
    """A `submit_answer` tool call."""
    return Call("submit_answer", {"answer": answer})
