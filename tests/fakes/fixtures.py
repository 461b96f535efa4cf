"""pytest fixtures for the fake LLM servers.

Load with `pytest_plugins = ["tests.fakes.fixtures"]` in the root `tests/conftest.py`.
One server per provider lives for the session (starting is cheap, but ports are not
free); each test gets it reset: empty script, no policy, no recorded requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cellprompt.config import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def _fake_anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake OpenAI-compatible server; pass `fake_openai.url` as the base URL (no key needed)."""
    _fake_openai_server.reset()
    yield _fake_openai_server
    _fake_openai_server.reset()


@pytest.fixture
def fake_anthropic(_fake_anthropic_server: FakeAnthropic,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """The fake Anthropic server; pass `fake_anthropic.url` as the base URL.

    Sets a dummy `ANTHROPIC_API_KEY` for the test, since that provider always needs one.
    """
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake-key")
    _fake_anthropic_server.reset()
    yield _fake_anthropic_server
    _fake_anthropic_server.reset()


@pytest.fixture
def fast_llm_settings() -> Settings:
    """Settings whose retries and timeouts suit tests: short waits, few attempts, no cache."""
    return Settings(llm_timeout_s=5.0, llm_max_retries=2, llm_retry_base_s=0.01,
                    llm_retry_max_wait_s=3.0, llm_cache_dir=None, openai_base_url=None,
                    prices={})
