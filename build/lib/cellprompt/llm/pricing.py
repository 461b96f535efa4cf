"""USD per million tokens, so a run can report and cap what it spends.

Prices change; users override or add entries with `Settings.prices`
(`{"openai:gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}}`).
An unpriced model costs 0 and is flagged (`Usage.cost_unknown`), never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from cellprompt.llm.base import Usage


class Price(BaseModel):
    input: float
    output: float
    cached_input: float | None = None  # None: cached tokens are billed as input


def _p(inp: float, out: float, cached: float | None = None) -> Price:
    return Price(input=inp, output=out, cached_input=cached)


# Keys are `provider:model`; a dated or suffixed name ("gpt-4o-2024-08-06") falls back to the
# longest key it starts with. Anthropic's cache reads are billed at a tenth of input.
PRICES: dict[str, Price] = {
    "openai:gpt-4o": _p(2.50, 10.00, 1.25),
    "openai:gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "openai:gpt-4.1": _p(2.00, 8.00, 0.50),
    "openai:gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "openai:gpt-4-turbo": _p(10.00, 30.00),
    "openai:gpt-3.5-turbo": _p(0.50, 1.50),
    "openai:gpt-5": _p(1.25, 10.00, 0.125),
    "openai:gpt-5-mini": _p(0.25, 2.00, 0.025),
    "openai:gpt-5-nano": _p(0.05, 0.40, 0.005),
    "openai:o1": _p(15.00, 60.00, 7.50),
    "openai:o1-mini": _p(1.10, 4.40, 0.55),
    "openai:o3": _p(2.00, 8.00, 0.50),
    "openai:o3-mini": _p(1.10, 4.40, 0.55),
    "openai:o4-mini": _p(1.10, 4.40, 0.275),
    "anthropic:claude-opus-4-1": _p(15.00, 75.00, 1.50),
    "anthropic:claude-opus-4": _p(15.00, 75.00, 1.50),
    "anthropic:claude-sonnet-4-5": _p(3.00, 15.00, 0.30),
    "anthropic:claude-sonnet-4": _p(3.00, 15.00, 0.30),
    "anthropic:claude-haiku-4-5": _p(1.00, 5.00, 0.10),
    "anthropic:claude-3-7-sonnet": _p(3.00, 15.00, 0.30),
    "anthropic:claude-3-5-sonnet": _p(3.00, 15.00, 0.30),
    "anthropic:claude-3-5-haiku": _p(0.80, 4.00, 0.08),
    "anthropic:claude-3-opus": _p(15.00, 75.00, 1.50),
    "anthropic:claude-3-haiku": _p(0.25, 1.25, 0.03),
}


def find_price(spec: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> Price | None:
    """The price of `provider:model`: an override, the exact entry, else the longest prefix."""
    table: dict[str, Price] = dict(PRICES)
    for key, value in (overrides or {}).items():
        table[key] = Price.model_validate(dict(value))
    if spec in table:
        return table[spec]
    prefixes = [key for key in table if spec.startswith(key + "-")]
    return table[max(prefixes, key=len)] if prefixes else None


def priced(usage: Usage, spec: str,
           overrides: Mapping[str, Mapping[str, float]] | None = None) -> Usage:
    """`usage` with `cost_usd` filled in, or flagged `cost_unknown` when `spec` has no price."""
    price = find_price(spec, overrides)
    if price is None:
        return usage.model_copy(update={"cost_usd": 0.0, "cost_unknown": True})
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    cost = ((usage.input_tokens - cached) * price.input + cached * cached_rate
            + usage.output_tokens * price.output) / 1_000_000
    return usage.model_copy(update={"cost_usd": cost, "cost_unknown": False})
