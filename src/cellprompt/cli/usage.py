"""Usage errors from the argument parser, shown as a short message instead of a traceback.

Why a module of its own: typer ≥ 0.20 bundles its own copy of click (`typer._click`) whose
exceptions are not `click.ClickException`, while older typers raise the real click's. The entry
point must recognise both, whatever is installed, and say what is wrong, the valid choices and
where the help is, then exit 2.
"""

from __future__ import annotations

import difflib
from typing import Any

from rich.console import Console
from rich.markup import escape


def parser_exception_types() -> tuple[type[BaseException], ...]:
    """The `ClickException` classes of every click the installed typer may raise."""
    types: list[type[BaseException]] = []
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # typer ≥ 0.20 does not need click installed
        pass
    try:
        from typer._click.exceptions import ClickException as BundledClickException

        types.append(BundledClickException)
    except ImportError:  # typer < 0.20 uses the real click
        pass
    return tuple(types)


def _commands_of(ctx: Any) -> list[str]:
    command = getattr(ctx, "command", None)
    if command is None or not hasattr(command, "list_commands"):
        return []
    try:
        return [name for name in command.list_commands(ctx)
                if not getattr(command.get_command(ctx, name), "hidden", False)]
    except Exception:  # a broken group must not hide the user's error
        return []


def usage_message(exc: BaseException) -> tuple[str, str | None]:
    """(what is wrong with the valid choices, the help command to read) for a parser error."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    ctx = getattr(exc, "ctx", None)
    commands = _commands_of(ctx)
    if commands and message.startswith("No such command"):
        wrong = message.split("'")[1] if message.count("'") >= 2 else ""
        close = difflib.get_close_matches(wrong, commands, n=1)
        hint = f" Did you mean '{close[0]}'?" if close and "Did you mean" not in message else ""
        message = f"{message}{hint} Commands: {', '.join(commands)}."
    elif commands and "Missing command" in message:
        message = f"{message} Commands: {', '.join(commands)}."
    path = getattr(ctx, "command_path", None) or "cellprompt"
    return message, f"{path} --help"


def show_usage_error(exc: BaseException, console: Console) -> int:
    """Print one short message for a parser error; return its exit code (2 for usage)."""
    message, help_command = usage_message(exc)
    code = getattr(exc, "exit_code", 2)
    code = code if isinstance(code, int) else 2
    if not message.strip():  # a group called bare: click has printed its help already
        return code
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if help_command:
        console.print(f"  see: {escape(help_command)}", highlight=False, soft_wrap=True)
    return code
