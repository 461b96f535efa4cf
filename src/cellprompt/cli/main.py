"""The `cellprompt` entry point: one root typer app; user errors become one-line messages."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer

from cellprompt.cli import (
    configure_cmd,
    datasets_cmd,
    demo_cmd,
    evaluate_cmd,
    evolve_cmd,
    export_cmd,
    mcp_cmd,
    run_cmd,
    sandbox_cmd,
    tasks_cmd,
    tasks_new_cmd,
)
from cellprompt.cli.console import err
from cellprompt.cli.help_text import polish
from cellprompt.cli.usage import parser_exception_types, show_usage_error
from cellprompt.errors import CellpromptError
from cellprompt.version import __version__

app = typer.Typer(
    name="cellprompt",
    help="Benchmark and evolve the prompts of LLM agents that analyse single-cell data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cellprompt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose",
                                 help="Log what cellprompt does, and every error it recovers from."),
) -> None:
    """cellprompt: which prompt and which model really does the analysis right."""
    if verbose:
        _log_to_terminal()


def _log_to_terminal() -> None:
    """cellprompt's debug log (suppressed errors with their tracebacks) on stderr."""
    from rich.logging import RichHandler

    logger = logging.getLogger("cellprompt")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(RichHandler(console=err, show_path=False, rich_tracebacks=False))


for module in (demo_cmd, configure_cmd, datasets_cmd, tasks_cmd, tasks_new_cmd, sandbox_cmd, run_cmd,
               evaluate_cmd, export_cmd, evolve_cmd, mcp_cmd):
    module.register(app)


def command() -> Any:
    """The click command tree `main` runs: the typer app, each command with its examples."""
    root = typer.main.get_command(app)
    polish(root)
    return root


def main() -> None:
    """Run the CLI; a `CellpromptError` or a parser (usage) error is printed as a short message,
    never as a traceback."""
    try:
        code = command()(standalone_mode=False)  # an Exit inside a command comes back as its code
        if isinstance(code, int) and code:
            sys.exit(code)
    except CellpromptError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("[yellow]aborted[/]")
        sys.exit(1)
    except parser_exception_types() as exc:  # click's, or the copy bundled in typer ≥ 0.20
        sys.exit(show_usage_error(exc, err))


if __name__ == "__main__":
    main()
