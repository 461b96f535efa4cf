"""`make_model("provider:name")`: the one place a model spec becomes a `ChatModel`."""

from __future__ import annotations

from pathlib import Path

from cellprompt.config import Settings, get_settings
from cellprompt.errors import ModelError
from cellprompt.llm.base import ChatModel
from cellprompt.llm.cache import CachedModel
from cellprompt.llm.credentials import BASE_URL_VARS, api_key, env_value
from cellprompt.llm.retry import RetryPolicy

PROVIDERS = ("openai", "anthropic", "reference", "replay", "agent")


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_retries=settings.llm_max_retries, base_s=settings.llm_retry_base_s,
                       max_wait_s=settings.llm_retry_max_wait_s)


def make_model(spec: str, *, base_url: str | None = None,
               reference_cells: list[str] | None = None,
               settings: Settings | None = None) -> ChatModel:
    """Build the model a `--model` value names.

    `base_url` (else `Settings.openai_base_url`, else `OPENAI_BASE_URL`) points `openai:`
    at any compatible server; `reference_cells` are the task's reference solution for
    `reference`. API models are wrapped in the response cache when `llm_cache_dir` is set.
    """
    settings = settings or get_settings()
    provider, _, name = spec.partition(":")
    if provider == "reference" and not name:
        from cellprompt.llm.reference import ReferenceModel

        return ReferenceModel(reference_cells or [])
    if provider == "replay" and name:
        from cellprompt.llm.replay import ReplayModel

        return ReplayModel(Path(name))
    if provider == "agent":  # an external agent command, run through the MCP server
        from cellprompt.llm.agent_command import AgentCommand

        return AgentCommand(spec)
    if provider not in ("openai", "anthropic") or not name:
        raise ModelError(f"unknown model {spec!r}: use openai:NAME, anthropic:NAME, reference, "
                         "replay:FILE or agent:COMMAND")
    if provider == "openai":
        from cellprompt.llm.openai_model import OpenAIModel as Model
        url = base_url or settings.openai_base_url or env_value(BASE_URL_VARS["openai"])
    else:
        from cellprompt.llm.anthropic_model import AnthropicModel as Model  # type: ignore[assignment]
        url = base_url or env_value(BASE_URL_VARS["anthropic"])
    model: ChatModel = Model(name, api_key=api_key(provider, base_url=url), base_url=url,
                             timeout_s=settings.llm_timeout_s, policy=retry_policy(settings),
                             prices=settings.prices)
    if settings.llm_cache_dir is not None:
        model = CachedModel(model, Path(settings.llm_cache_dir))
    return model
