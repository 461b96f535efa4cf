"""The on-disk response cache, through a real client and the fake server."""

from __future__ import annotations

from pathlib import Path

from cellprompt.config import Settings
from cellprompt.llm import Message, make_model
from cellprompt.llm.cache import CachedModel
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Reply, execute


def test_cache_hit_makes_no_request(fake_openai: FakeOpenAI, fast_llm_settings: Settings,
                                    tmp_path: Path) -> None:
    settings = fast_llm_settings.model_copy(update={"llm_cache_dir": tmp_path / "cache"})
    fake_openai.push(Reply(text="first", tool_calls=[execute("x = 1")]), Reply(text="other"))
    history = [Message(role="user", content="hi")]
    m = make_model("openai:gpt-4o", base_url=fake_openai.url, settings=settings)
    assert isinstance(m, CachedModel) and m.spec == "openai:gpt-4o"
    fresh = m.complete(history, temperature=0.0)
    again = make_model("openai:gpt-4o", base_url=fake_openai.url, settings=settings).complete(
        history, temperature=0.0)
    assert len(fake_openai.requests) == 1
    assert again.from_cache and not fresh.from_cache
    assert again.message == fresh.message
    assert again.usage.input_tokens == fresh.usage.input_tokens and again.usage.cost_usd == 0.0
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1

    changed = m.complete(history, temperature=0.5)  # another parameter: another entry
    assert changed.message.content == "other" and len(fake_openai.requests) == 2


def test_corrupt_entry_is_a_miss(fake_openai: FakeOpenAI, fast_llm_settings: Settings,
                                 tmp_path: Path) -> None:
    settings = fast_llm_settings.model_copy(update={"llm_cache_dir": tmp_path})
    fake_openai.push(Reply(text="a"), Reply(text="b"))
    m = make_model("openai:gpt-4o", base_url=fake_openai.url, settings=settings)
    m.complete([Message(role="user", content="hi")])
    (entry,) = tmp_path.rglob("*.json")
    entry.write_text("{not json")
    assert m.complete([Message(role="user", content="hi")]).message.content == "b"
    assert len(fake_openai.requests) == 2


def test_as_recorded_replays_the_reply_as_first_received(fake_openai: FakeOpenAI,
                                                        fast_llm_settings: Settings, tmp_path: Path) -> None:
    """An evolution's reflection replies: a replay must see what the first session saw, and what
    they cost is counted once, from the entries."""
    fake_openai.push(Reply(text="a"), Reply(text="b"))
    inner = make_model("openai:gpt-4o", base_url=fake_openai.url, settings=fast_llm_settings)
    recorded = CachedModel(inner, tmp_path, as_recorded=True)
    first = recorded.complete([Message(role="user", content="hi")])
    again = CachedModel(inner, tmp_path, as_recorded=True)
    replay = again.complete([Message(role="user", content="hi")])
    assert len(fake_openai.requests) == 1
    assert replay == first and not replay.from_cache and replay.usage.cost_usd > 0
    other = again.complete([Message(role="user", content="other")])
    assert other.message.content == "b"
    assert again.recorded_usage() == first.usage + other.usage
    assert CachedModel(inner, tmp_path).recorded_usage() == first.usage + other.usage
