"""Model identity: the family comes from the name, or the provider on its own API only."""

from __future__ import annotations

from cellprompt.config import Settings
from cellprompt.llm.identity import model_identity

SETTINGS = Settings(openai_base_url=None, llm_cache_dir=None)


def family(spec: str, url: str | None = None) -> str | None:
    return model_identity(spec, url, SETTINGS).family


def test_families() -> None:
    assert family("openai:gpt-4o") == "openai" == family("openai:o3-mini")
    assert family("openai:o3-mini", "https://api.openai.com/v1/") == "openai"  # its own API
    assert family("openai:o3-mini", "http://localhost:8000/v1") is None  # a local server's model
    assert family("openai:gpt-4o", "https://openrouter.ai/api/v1") == "openai"  # the name says
    assert family("openai:anthropic/claude-3.5-sonnet", "https://openrouter.ai/api/v1") == "anthropic"
    assert family("anthropic:claude-sonnet-4-5") == "anthropic"
    assert family("openai:Qwen2.5-72B", "http://gpu:8000/v1") == "qwen"
    assert family("reference") is None and family("replay:x.yaml") is None


def test_the_same_model_at_the_same_server_shares_itself() -> None:
    local = model_identity("openai:mine", "http://localhost:8000/v1/", SETTINGS)
    assert local.shares_family(model_identity("openai:mine", "http://LOCALHOST:8000/v1", SETTINGS))
    assert not local.shares_family(model_identity("openai:mine", "http://other:8000/v1", SETTINGS))
    assert not local.shares_family(model_identity("openai:gpt-4o", None, SETTINGS))
