"""Price lookup: exact names, dated names, user overrides, unknown models."""

from __future__ import annotations

import pytest

from cellprompt.llm.base import Usage
from cellprompt.llm.pricing import find_price, priced


def test_dated_names_use_the_longest_matching_entry() -> None:
    assert find_price("openai:gpt-4o-mini-2024-07-18") == find_price("openai:gpt-4o-mini")
    assert find_price("openai:gpt-4o-2024-08-06") == find_price("openai:gpt-4o")
    assert find_price("openai:gpt-4omni") is None


def test_override_replaces_the_table() -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=0)
    out = priced(usage, "openai:gpt-4o", {"openai:gpt-4o": {"input": 1.0, "output": 1.0}})
    assert out.cost_usd == pytest.approx(2.0)


def test_unknown_model_costs_zero_and_is_flagged_through_sums() -> None:
    unknown = priced(Usage(input_tokens=10), "openai:whatever")
    known = priced(Usage(input_tokens=10), "openai:gpt-4o")
    assert unknown.cost_usd == 0.0 and unknown.cost_unknown
    total = known + unknown
    assert total.cost_unknown and total.input_tokens == 20
    assert total.cost_usd == pytest.approx(known.cost_usd)
