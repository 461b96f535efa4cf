"""The `ChatModel` protocol: provider-neutral messages in, one reply with usage out.

Providers differ in how they spell tool calls, images and usage; the agent loop,
the judge and the evolution strategies only ever see these types.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] | None = None  # None when `raw_arguments` is not valid JSON
    raw_arguments: str = ""
    parse_error: str | None = None  # told back to the model instead of crashing the trial


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


class Usage(BaseModel):
    """Token counts of one call (or a sum); `input_tokens` includes the `cached_tokens` among them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    # True when some call's model had no price (cost_usd then undercounts): shown, never fatal
    cost_unknown: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            cost_unknown=self.cost_unknown or other.cost_unknown,
        )


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
