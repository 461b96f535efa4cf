"""The fake LLM servers, for the judge tests that go through the real provider clients."""

from tests.fakes.fixtures import (  # noqa: F401
    _fake_anthropic_server,
    _fake_openai_server,
    fake_anthropic,
    fake_openai,
)
