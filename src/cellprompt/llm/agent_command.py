"""`agent:COMMAND`: an external agent (Claude Code, Codex CLI, any MCP client) in the model slot.

It is not a chat model: a trial runs the command once with cellprompt's MCP server
wired to it (`cellprompt.mcp.external`). It still passes through `make_model` so
that every place that checks a `--model` value up front (run planning, evolution)
accepts it and refuses a command that cannot start, before any trial runs.
"""

from __future__ import annotations

import shlex
import shutil
from typing import Any

from cellprompt.errors import ModelError
from cellprompt.llm.base import ChatReply, Message, ToolSpec

PREFIX = "agent:"


def is_agent_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


class AgentCommand:
    """The `agent:COMMAND` slot; `complete()` refuses, since the agent brings its own model."""

    provider = "agent"
    supports_tools = True
    supports_images = True

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.command = spec[len(PREFIX):].strip()
        if not self.command:
            raise ModelError('agent: needs a command, e.g. --model agent:"claude -p ..." (see docs/mcp.md)')
        try:
            words = shlex.split(self.command)
        except ValueError as exc:
            raise ModelError(f"agent command {self.command!r} cannot be parsed: {exc}") from None
        program = next((w for w in words if "=" not in w or w.startswith(("/", "."))), "")
        if not program or shutil.which(program) is None:
            raise ModelError(f"agent command {self.command!r}: program {program or '?'!r} is not "
                             "found on PATH; install it or give its full path")

    def complete(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 max_tokens: int | None = None, temperature: float | None = None,
                 response_schema: dict[str, Any] | None = None) -> ChatReply:
        raise ModelError(f"{self.spec} is an external agent, not a chat model: it can play trials "
                         "but not judge or reflect; pass a provider:name model for that role")
