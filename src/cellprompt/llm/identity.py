"""Who a model is, as far as its spec and its server say: for the judge's self-preference warning.

Why: the protocol is not the vendor. `openai:my-finetune` behind `--base-url
http://localhost:8000/v1` speaks OpenAI's protocol but is no OpenAI model, and warning that an
OpenAI judge "may favour its own family" there is noise that teaches users to skip warnings.
A model's identity is its provider, its name and its server; its family comes from its name when
the name says (claude, gpt, llama, qwen, …), else from the provider only on the provider's own API.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellprompt.config import Settings, get_settings
from cellprompt.llm.credentials import BASE_URL_VARS
from cellprompt.llm.factory import server_url

# (text in the model's name, its family), first match wins; "claude" before "gpt" and the rest
NAME_FAMILIES = (("claude", "anthropic"), ("gpt", "openai"), ("llama", "llama"), ("qwen", "qwen"),
                 ("mixtral", "mistral"), ("mistral", "mistral"), ("gemini", "gemini"),
                 ("gemma", "gemma"), ("deepseek", "deepseek"))
# A base URL that is the provider's own API is no other server.
OWN_APIS = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}


@dataclass(frozen=True)
class ModelIdentity:
    provider: str  # the protocol: openai, anthropic, reference, replay, agent
    name: str
    server: str | None  # None: the provider's own API (or no server at all)

    @property
    def family(self) -> str | None:
        """The vendor whose model this is, or None when nothing says (a local fine-tune)."""
        lowered = self.name.lower()
        for marker, family in NAME_FAMILIES:
            if marker in lowered:
                return family
        return self.provider if self.server is None and self.provider in OWN_APIS else None

    def shares_family(self, other: ModelIdentity) -> bool:
        """The same model (same name at the same server), or two models of one known vendor."""
        return self == other or (self.family is not None and self.family == other.family)


def model_identity(spec: str, base_url: str | None = None,
                   settings: Settings | None = None) -> ModelIdentity:
    """The identity of `spec` served from `base_url` (else the settings' server, as `make_model`)."""
    provider, _, name = spec.partition(":")
    url = None
    if provider in BASE_URL_VARS:
        url = server_url(provider, base_url, settings or get_settings())
    server = url.rstrip("/").lower() if url else None
    if server and server.removesuffix("/v1") == OWN_APIS.get(provider):
        server = None
    return ModelIdentity(provider, name, server)
