"""CLI: `cellprompt mcp serve|bridge`: a task's sandbox for any MCP client (thin: parse, call, render)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from cellprompt.cli.console import err, out
from cellprompt.config import get_settings
from cellprompt.errors import UsageError

mcp_app = typer.Typer(help="Serve a task's sandbox to any MCP client (Claude Code, Codex CLI, …).",
                      no_args_is_help=True)


@mcp_app.command()
def serve(
    task: str = typer.Option(..., "--task", "-t", help="Task id or task file."),
    sandbox: str | None = typer.Option(None, "--sandbox", help="bwrap | docker (default: settings)"),
    transport: str = typer.Option("stdio", "--transport", help="stdio | http (127.0.0.1, bearer token)"),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="http: port (0: a free one)"),
    token: str | None = typer.Option(None, "--token", envvar="CELLPROMPT_MCP_TOKEN",
                                     help="http: the bearer token (default: a random one, printed)"),
    prompt: str | None = typer.Option(None, "--prompt", "-p",
                                      help="Prompt text or file, sent as the server's instructions."),
    out_dir: Path | None = typer.Option(None, "--out", help="Folder of runs (default outputs/)."),
    linked: bool = typer.Option(False, "--linked", hidden=True, help="internal: the stdio relay's worker"),
) -> None:
    """Serve one trial of TASK over MCP; it is graded on submit_answer or when the client leaves.

    Tools: execute_python, list_files, read_file, submit_answer; the task is the resource
    cellprompt://task. The trial is stored as a one-trial run folder.
    """
    from cellprompt.runs.mcp_serve import Listening, announce_linked, serve_stdio, serve_task
    from cellprompt.runs.plan import load_prompts

    if transport not in ("stdio", "http"):
        raise UsageError(f"unknown --transport {transport!r}: use stdio or http")
    if token is not None and len(token) < 16:
        raise UsageError("--token must be at least 16 characters")
    prompt_text = next(iter(load_prompts([prompt]).values())) if prompt else ""
    settings = get_settings()
    if transport == "stdio":  # a relay to a linked worker, which outlives the client to grade
        from cellprompt.tasks import load_task

        load_task(task)  # a wrong task id fails here, in one line
        args = ["--task", task, "--sandbox", sandbox or settings.sandbox_backend,
                "--out", str((out_dir or settings.outputs_dir).resolve())]
        raise typer.Exit(serve_stdio(args + (["--prompt", prompt_text] if prompt_text else [])))

    def on_ready(listening: Listening) -> None:
        if linked:
            return announce_linked(listening)
        config = {"mcpServers": {"cellprompt": {"type": "http", "url": listening.url,
                                                "headers": {"Authorization": f"Bearer {listening.token}"}}}}
        out.print(f"MCP server for task {task}: {listening.url}", highlight=False)
        out.print(f"client config: {json.dumps(config)}", highlight=False)
        sys.stdout.flush()

    store, record = serve_task(task, outputs_dir=out_dir or settings.outputs_dir,
                               sandbox_backend=sandbox or settings.sandbox_backend, prompt=prompt_text,
                               port=port, token=token, linked=linked, on_ready=on_ready,
                               command=shlex.join(["cellprompt", *sys.argv[1:]]))
    score = "–" if record.score is None else f"{record.score:.2f}"
    why = record.limit or record.error or ""
    err.print(f"trial {record.trial_id}: {record.status}{f' ({why})' if why else ''}, score {score}, "
              f"{'passed' if record.passed else 'not passed'} → {store.path}", highlight=False)


@mcp_app.command()
def bridge(config: Path = typer.Argument(..., help="The {mcp_config} file of an agent: trial.")) -> None:
    """Relay stdio to a trial's HTTP MCP server, for clients that only launch stdio servers."""
    from cellprompt.mcp.bridge import relay

    relay(config)


def register(app: typer.Typer) -> None:
    app.add_typer(mcp_app, name="mcp")
