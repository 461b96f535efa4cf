"""Shared rich consoles and the ask-or-fail helper every command uses for missing arguments."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.prompt import Prompt

from cellprompt.errors import UsageError

# Without a terminal (a pipe, a file, CI) rich assumes 80 columns and cuts table cells, task ids
# included; nothing limits the width of a file, so tables get room for their longest id there.
PIPE_WIDTH = 400


def _width(stream: object) -> int | None:
    is_tty = getattr(stream, "isatty", lambda: False)()
    return None if is_tty or os.environ.get("COLUMNS") else PIPE_WIDTH


out = Console(soft_wrap=True, width=_width(sys.stdout))  # paths and commands are copied from here
err = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))  # one-line messages stay one line


def money(usd: float, unknown: bool = False) -> str:
    """A cost as the CLI prints it. An unpriced model's usage is recorded as $0 and flagged;
    printing that 0 would read as "free", so it reads "unknown" (or "$x + unknown" when priced
    calls are mixed in)."""
    if not unknown:
        return f"${usd:.4f}"
    return f"${usd:.4f} + unknown" if usd > 0 else "unknown"


def with_ci(mean: float | None, low: float | None, high: float | None, n: int, digits: int = 3) -> str:
    """A mean and its 95% CI as tables print it; below the report's `MIN_N` values a CI (say
    1.000–1.000 from one trial) would read as certainty, so it says so instead."""
    from cellprompt.export.cells import MIN_N

    if mean is None:
        return "–"
    if n < MIN_N or low is None or high is None:
        return f"{mean:.{digits}f} (n={n}, no CI)"
    return f"{mean:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def interactive() -> bool:
    """Asking is only allowed when a person sits at both ends of the terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def ask(value: str | None, option: str, question: str, *, choices: Sequence[str] | None = None,
        default: str | None = None) -> str:
    """Return `value`, or ask for it on a terminal, or fail with the option to pass.

    Without a terminal a question that has a default takes it, so a script gets the same run as a
    person pressing Enter; only questions without a default fail.
    """
    if value is not None:
        return value
    if not interactive():
        if default is not None:
            return default
        shown = f" (one of: {', '.join(choices)})" if choices else ""
        raise UsageError(f"missing {option}{shown}: pass it on the command line (no terminal to ask on)")
    if default is None:  # rich's overloads: no default means the answer is always a str
        return Prompt.ask(question, choices=list(choices) if choices else None, console=out)
    return Prompt.ask(question, choices=list(choices) if choices else None, default=default,
                      console=out)
