"""`make_model("provider:name")`: the one place a model spec becomes a `ChatModel`.

Each provider is a builder registered with `@providers.register(name)`; it imports its SDK
only when asked for, and returns None when the spec's shape is not one it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cellprompt.config import Settings, get_settings
from cellprompt.errors import ModelError
from cellprompt.llm.base import ChatModel
from cellprompt.llm.cache import CachedModel
from cellprompt.llm.credentials import BASE_URL_VARS, api_key, env_value
from cellprompt.llm.retry import RetryPolicy
from cellprompt.registry import Registry

ModelBuilder = Callable[..., "ChatModel | None"]  # (name, *, spec, base_url, reference_cells, settings)

providers: Registry[ModelBuilder] = Registry("model provider")


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
    provider, _, name = spec.partition(":")
    build = providers.get(provider)
    model = build(name, spec=spec, base_url=base_url, reference_cells=reference_cells,
                  settings=settings or get_settings()) if build else None
    if model is None:
        raise ModelError(f"unknown model {spec!r}: use openai:NAME, anthropic:NAME, reference, "
                         "replay:FILE or agent:COMMAND")
    return model


def server_url(provider: str, base_url: str | None, settings: Settings) -> str | None:
    """The server an API model talks to: the flag, else the setting (`openai:` only), else the
    provider's `*_BASE_URL` variable; None is the provider's own API."""
    if base_url:
        return base_url
    setting = settings.openai_base_url if provider == "openai" else None
    return setting or env_value(BASE_URL_VARS[provider])


@providers.register("openai")
def _openai(name: str, *, base_url: str | None, settings: Settings, **_: object) -> ChatModel | None:
    from cellprompt.llm.openai_model import OpenAIModel

    url = server_url("openai", base_url, settings)
    return _api_model(OpenAIModel, "openai", name, url, settings) if name else None


@providers.register("anthropic")
def _anthropic(name: str, *, base_url: str | None, settings: Settings, **_: object) -> ChatModel | None:
    from cellprompt.llm.anthropic_model import AnthropicModel

    url = server_url("anthropic", base_url, settings)
    return _api_model(AnthropicModel, "anthropic", name, url, settings) if name else None


def _api_model(cls: Callable[..., ChatModel], provider: str, name: str, url: str | None,
               settings: Settings) -> ChatModel:
    model = cls(name, api_key=api_key(provider, base_url=url), base_url=url,
                timeout_s=settings.llm_timeout_s, policy=retry_policy(settings), prices=settings.prices)
    if settings.llm_cache_dir is not None:
        model = CachedModel(model, Path(settings.llm_cache_dir))
    return model


@providers.register("reference")
def _reference(name: str, *, reference_cells: list[str] | None, **_: object) -> ChatModel | None:
    from cellprompt.llm.reference import ReferenceModel

    return None if name else ReferenceModel(reference_cells or [])


@providers.register("replay")
def _replay(name: str, **_: object) -> ChatModel | None:
    from cellprompt.llm.replay import ReplayModel

    return ReplayModel(Path(name)) if name else None


@providers.register("agent")
def _agent(name: str, *, spec: str, **_: object) -> ChatModel:
    """An external agent command, run through the MCP server."""
    from cellprompt.llm.agent_command import AgentCommand

    return AgentCommand(spec)
