"""API keys and base URLs from the environment or `.env`, and writing `.env` safely.

Keys never live in `Settings` (whose `.env` fields carry the `CELLPROMPT_` prefix):
they keep the names every provider SDK and tutorial uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from cellprompt.errors import ConfigError, MissingAPIKeyError

KEY_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BASE_URL_VARS = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
# Sent to keyless OpenAI-compatible servers (vLLM, Ollama, LM Studio): the SDK insists on a key.
PLACEHOLDER_KEY = "not-needed"

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_PLAIN = re.compile(r"^[A-Za-z0-9_\-.:/+=@,]*$")


def env_value(name: str, env_file: Path = Path(".env")) -> str | None:
    """The environment's value of `name`, else the one in `env_file`; empty counts as unset."""
    value = os.environ.get(name)
    if value:
        return value
    if env_file.is_file():
        value = dotenv_values(env_file).get(name)
    return value or None


def api_key(provider: str, *, base_url: str | None = None,
            env_file: Path = Path(".env")) -> str:
    """The provider's key; a custom OpenAI-compatible base URL may do without one."""
    var = KEY_VARS[provider]
    key = env_value(var, env_file)
    if key:
        return key
    if base_url and provider == "openai":
        return PLACEHOLDER_KEY
    raise MissingAPIKeyError(f"{var} is not set: run `cellprompt configure` or export it")


def _quote(value: str) -> str:
    if _PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def update_env_file(path: Path, values: Mapping[str, str]) -> Path:
    """Set `values` in the dotenv file at `path`, keeping every other line; mode 0600.

    Existing assignments of the same names are replaced in place (the last one wins when a
    name appears twice, so all copies are rewritten); new names are appended.
    """
    if any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) for name in values):
        raise ConfigError(f"invalid variable name in {sorted(values)}: use letters, digits, _")
    if any("\n" in v or "\r" in v for v in values.values()):
        raise ConfigError("a value for .env contains a line break: paste the key on one line")
    lines = path.read_text().splitlines() if path.exists() else []
    written: set[str] = set()
    out: list[str] = []
    for line in lines:
        match = _LINE.match(line)
        if match and match.group(1) in values:
            name = match.group(1)
            out.append(f"{name}={_quote(values[name])}")
            written.add(name)
        else:
            out.append(line)
    out.extend(f"{name}={_quote(v)}" for name, v in values.items() if name not in written)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # O_CREAT's mode does not apply to a leftover file
            fh.write("\n".join(out) + "\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
