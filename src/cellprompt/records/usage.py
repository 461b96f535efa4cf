"""A model's tool calls and token usage, as kept in trial records and summed into costs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] | None = None  # None when `raw_arguments` is not valid JSON
    raw_arguments: str = ""
    parse_error: str | None = None  # told back to the model instead of crashing the trial


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
