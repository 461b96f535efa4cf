"""The `ChatModel` protocol: provider-neutral messages in, one reply with usage out.

Providers differ in how they spell tool calls, images and usage; the agent loop,
the judge and the evolution strategies only ever see these types.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cellprompt.records.usage import ToolCall, Usage

__all__ = ["ChatModel", "ChatReply", "Message", "Role", "ToolCall", "ToolSpec", "Usage"]

Role = Literal["system", "user", "assistant", "tool"]


class Message(BaseModel):
    role: Role
    content: str = ""
    images: list[str] = Field(default_factory=list)  # base64 PNGs (user/tool messages)
    tool_calls: list[ToolCall] = Field(default_factory=list)  # assistant messages
    tool_call_id: str | None = None  # tool messages: which call this answers


class ToolSpec(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


class ChatReply(BaseModel):
    message: Message  # role == "assistant"
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    stop_reason: str | None = None  # "end_turn", "tool_use", "max_tokens", ...
    model: str = ""  # the provider's own model name, as it reported it
    from_cache: bool = False  # served by the on-disk response cache (no money spent: cost 0)


@runtime_checkable
class ChatModel(Protocol):
    """One model behind one provider; stateless between calls."""

    spec: str  # as the user wrote it: "openai:gpt-4o", "reference", "replay:FILE"
    provider: str  # "openai", "anthropic", "reference", "replay"
    supports_tools: bool
    supports_images: bool

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        """One call. `response_schema` asks for JSON output matching it (judges, reflection)."""
        ...
