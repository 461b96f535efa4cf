"""Does a model answer? One cheap question to its server before a run spends minutes on trials.

Why: a wrong model name, a dead `--base-url` or a refused key used to surface only at trial
time — a 404 in every trial, or six retries of ~25 s each — and the run ended as a row of zeros.
Here it is asked once, through the same SDK the trials use, with a short timeout and no retries:
the models endpoint first (it costs nothing), and only when the server's models endpoints do not
vouch for the name, one completion of a single token (servers that ignore the model name, or
have no models endpoint). A failure is one `ModelError` line that names the flag to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from cellprompt.config import Settings, get_settings
from cellprompt.errors import ModelError
from cellprompt.llm import sdk_errors
from cellprompt.llm.credentials import KEY_VARS, api_key
from cellprompt.llm.factory import make_model, server_url

PREFLIGHT_TIMEOUT_S = 10.0  # a server that needs longer to say hello will not serve a run
_SHOWN = 8  # served model names quoted in a not-found message
_API_NAMES = {"openai": "the OpenAI API", "anthropic": "the Anthropic API"}
NETWORK_PROVIDERS = frozenset(_API_NAMES)


def needs_network(spec: str) -> bool:
    """Whether `spec` talks to a server (`reference`, `replay:` and `agent:` do not)."""
    return spec.partition(":")[0] in NETWORK_PROVIDERS


def check_model(spec: str, *, base_url: str | None = None, url_source: str = "--base-url",
                model_source: str = "--model", settings: Settings | None = None,
                timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Raise a one-line `ModelError` (or `MissingAPIKeyError`) unless `spec` can answer.

    `url_source` and `model_source` name where the URL and the model came from (a flag, or a
    field of the experiment file), so the message says what to change.
    """
    if spec == "reference":  # offline; it plays each task's own solution, checked with the task
        return
    settings = settings or get_settings()
    make_model(spec, base_url=base_url, settings=settings)  # the spec's shape, the key, a replay file
    if not needs_network(spec):
        return
    provider, _, name = spec.partition(":")
    url = server_url(provider, base_url, settings)
    probe = _Probe(spec, provider, url, url_source, model_source, timeout_s)
    key = api_key(provider, base_url=url)
    if provider == "openai":
        _check_openai(probe, name, key)
    else:
        _check_anthropic(probe, name, key)


class _Probe:
    """What a check needs to turn an SDK exception into the user's one line."""

    def __init__(self, spec: str, provider: str, url: str | None, url_source: str,
                 model_source: str, timeout_s: float) -> None:
        self.spec, self.provider, self.url = spec, provider, url
        self.where = url or _API_NAMES[provider]
        self.url_source, self.model_source, self.timeout_s = url_source, model_source, timeout_s

    def not_found(self, name: str, served: list[str] | None) -> ModelError:
        listed = ""
        if served:
            more = ", …" if len(served) > _SHOWN else ""
            listed = f" (it serves: {', '.join(sorted(served)[:_SHOWN])}{more})"
        return ModelError(f"{self.spec}: model {name!r} not found at {self.where}{listed}: "
                          f"fix {self.model_source}")

    def failure(self, exc: Exception, sdk: ModuleType) -> ModelError:
        found = sdk_errors.classify(exc, sdk, timeout_s=self.timeout_s,
                                    key_var=KEY_VARS[self.provider])
        reason = found.reason if found else str(exc)
        if isinstance(exc, sdk.APIConnectionError):  # refused, unknown host, timed out
            return ModelError(f"{self.spec}: cannot connect to {self.where} ({reason}): "
                              f"check {self.url_source}")
        return ModelError(f"{self.spec}: {self.where} answered {reason}")

    def ask(self, call: Callable[[], Any], sdk: ModuleType, *, absent: tuple[int, ...]) -> Any:
        """`call()`; None when the server answers one of the `absent` statuses (no such model,
        or no such route); any other failure is the user's one line."""
        try:
            return call()
        except sdk.APIStatusError as exc:
            if exc.status_code in absent:
                return None
            raise self.failure(exc, sdk) from None
        except sdk.APIError as exc:
            raise self.failure(exc, sdk) from None


_NO_ROUTE = (404, 405, 501)  # a compatible server without this endpoint, or no such model


def _check_openai(probe: _Probe, name: str, key: str) -> None:
    import openai

    client = openai.OpenAI(api_key=key, base_url=probe.url, timeout=probe.timeout_s, max_retries=0)
    if probe.ask(lambda: client.models.retrieve(name), openai, absent=_NO_ROUTE) is not None:
        return
    page = probe.ask(lambda: client.models.list(), openai, absent=_NO_ROUTE)
    served = [m.id for m in page] if page is not None else None
    if served is not None and name in served:
        return

    def one_token() -> Any:
        # OpenAI's own reasoning models refuse `max_tokens`; many compatible servers only know it
        if probe.url is None:
            return client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "Say OK."}], max_completion_tokens=1)
        return client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1)

    if probe.ask(one_token, openai, absent=(404,)) is None:
        raise probe.not_found(name, served)


def _check_anthropic(probe: _Probe, name: str, key: str) -> None:
    import anthropic

    client = anthropic.Anthropic(api_key=key, base_url=probe.url, timeout=probe.timeout_s,
                                 max_retries=0)
    models = getattr(client, "models", None)  # the models API came with anthropic 0.40
    if models is not None and probe.ask(lambda: models.retrieve(name), anthropic,
                                        absent=_NO_ROUTE) is not None:
        return
    reply = probe.ask(lambda: client.messages.create(
        model=name, max_tokens=1, messages=[{"role": "user", "content": "Say OK."}]),
        anthropic, absent=(404,))
    if reply is None:
        raise probe.not_found(name, None)
