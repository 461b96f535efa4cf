"""Fixtures of the fake LLM servers for this folder (the root conftest may load them globally)."""

from tests.fakes.fixtures import (  # noqa: F401
    _fake_anthropic_server,
    _fake_openai_server,
    fake_anthropic,
    fake_openai,
    fast_llm_settings,
)
