"""CLI: `cellprompt configure` saves API keys (and an OpenAI-compatible base URL) to `.env`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.prompt import Prompt

from cellprompt.cli.console import interactive, out
from cellprompt.config import reset_settings
from cellprompt.errors import UsageError
from cellprompt.llm.credentials import env_value, update_env_file

# (variable, question, secret)
_QUESTIONS = (
    ("OPENAI_API_KEY", "OpenAI API key", True),
    ("ANTHROPIC_API_KEY", "Anthropic API key", True),
    ("OPENAI_BASE_URL", "OpenAI-compatible base URL (vLLM, Ollama, OpenRouter…)", False),
)


def _ask_all(env_file: Path) -> dict[str, str]:
    """Ask for each value on the terminal; Enter keeps what is there. Keys are never echoed."""
    values: dict[str, str] = {}
    for var, question, secret in _QUESTIONS:
        current = env_value(var, env_file)
        hint = "set; Enter keeps it" if current else "not set; Enter skips"
        answer = Prompt.ask(f"{question} [dim]({var}: {hint})[/]", password=secret, default="",
                            show_default=False, console=out).strip()
        if answer:
            values[var] = answer
    return values


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""

    @app.command("configure")
    def configure(
        openai_key: str | None = typer.Option(None, "--openai-key", help="OpenAI API key."),
        anthropic_key: str | None = typer.Option(None, "--anthropic-key",
                                                 help="Anthropic API key."),
        base_url: str | None = typer.Option(None, "--base-url",
                                            help="OpenAI-compatible server URL (OPENAI_BASE_URL)."),
        env_file: Path = typer.Option(Path(".env"), "--env-file", help="The dotenv file to write."),
    ) -> None:
        """Save API keys to .env (mode 0600), keeping its other lines; asks on a terminal."""
        given = {"OPENAI_API_KEY": openai_key, "ANTHROPIC_API_KEY": anthropic_key,
                 "OPENAI_BASE_URL": base_url}
        values = {var: v.strip() for var, v in given.items() if v is not None and v.strip()}
        if not values and all(v is None for v in given.values()):
            if not interactive():
                raise UsageError("nothing to configure: pass --openai-key, --anthropic-key or "
                                 "--base-url (no terminal to ask on)")
            values = _ask_all(env_file)
        if not values:
            out.print("nothing changed")
            return
        path = update_env_file(env_file, values)
        reset_settings()
        out.print(f"saved {', '.join(values)} to {path} (mode 0600)", highlight=False)
