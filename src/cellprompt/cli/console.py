"""Shared rich consoles and the ask-or-fail helper every command uses for missing arguments."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.prompt import Prompt

from cellprompt.errors import UsageError

out = Console(soft_wrap=True)  # paths and commands are copied from here: never wrap them
err = Console(stderr=True, soft_wrap=True)  # one-line messages stay one line (paths, commands)


def interactive() -> bool:
    """Asking is only allowed when a person sits at both ends of the terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def ask(value: str | None, option: str, question: str, *, choices: Sequence[str] | None = None,
        default: str | None = None) -> str:
    """Return `value`, or ask for it on a terminal, or fail with the option to pass."""
    if value is not None:
        return value
    if not interactive():
        raise UsageError(f"missing {option}: pass it on the command line (no terminal to ask on)")
    if default is None:  # rich's overloads: no default means the answer is always a str
        return Prompt.ask(question, choices=list(choices) if choices else None, console=out)
    return Prompt.ask(question, choices=list(choices) if choices else None, default=default,
                      console=out)
