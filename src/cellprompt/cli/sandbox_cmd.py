"""CLI: `cellprompt sandbox build|start|status|logs|stop|exec` (thin: parse, call, render)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Column, Table
from rich.text import Text

from cellprompt.cli.console import err, out
from cellprompt.errors import SandboxError, UsageError
from cellprompt.sandbox import ExecutionResult, manage, open_sandbox
from cellprompt.sandbox.build import build as build_backend

sandbox_app = typer.Typer(help="Build, start, inspect and stop code-execution sandboxes.",
                          no_args_is_help=True)

BACKEND_HELP = "auto | bwrap | docker | local (local needs --unsafe)"


@sandbox_app.command()
def build(backend: str = typer.Option("bwrap", "--backend", "-b", help=BACKEND_HELP)) -> None:
    """Prepare what the backend needs (bwrap: the sandbox's Python; docker: the image)."""
    with err.status(f"building the {backend} sandbox runtime…") as status:
        summary = build_backend(backend, progress=lambda line: status.update(line[:100]))
    out.print(f"[green]✓[/] {summary}")


def _check_fits(datasets: list[Path], memory: str | None) -> None:
    """A dataset that cannot fit the sandbox's memory is refused before anything starts."""
    from cellprompt.config import get_settings
    from cellprompt.datasets.footprint import check_fits

    for path in datasets:
        if path.exists():
            check_fits(path, memory or get_settings().sandbox_memory)


@sandbox_app.command()
def start(
    backend: str | None = typer.Option(None, "--backend", "-b", help=BACKEND_HELP),
    dataset: list[Path] = typer.Option([], "--dataset", "-d", help="mounted at /data/<name>"),
    memory: str | None = typer.Option(None, help="memory limit, e.g. 4g"),
    cpus: float | None = typer.Option(None, help="CPU limit"),
    unsafe: bool = typer.Option(False, help="allow the unisolated local backend"),
) -> None:
    """Launch a detached sandbox and print its id."""
    _check_fits(dataset, memory)
    with err.status("starting sandbox…"):
        sb = open_sandbox(backend, dataset, memory=memory, cpus=cpus, unsafe=unsafe,
                          detached=True)
    out.print(sb.id)


@sandbox_app.command()
def status() -> None:
    """List the sandboxes on this machine."""
    infos = manage.list_sandboxes()
    if not infos:
        out.print("no sandboxes")
        return
    table = Table("backend", "state", "kind", "created", "memory", "cpus")
    table.columns.insert(0, Column("id", no_wrap=True))
    for info in infos:
        rec = info.record
        table.add_row(rec.sandbox_id, rec.backend,
                      "[green]running[/]" if info.alive else "[red]stopped[/]",
                      "detached" if rec.detached else f"pid {rec.parent_pid}",
                      rec.created.strftime("%Y-%m-%d %H:%M:%S"), rec.memory or "-",
                      f"{rec.cpus:g}" if rec.cpus else "-")
    out.print(table)


@sandbox_app.command()
def logs(sandbox_id: str = typer.Argument(..., metavar="ID"),
         lines: int = typer.Argument(100, metavar="[N]")) -> None:
    """Show the last N lines of a sandbox's service log."""
    out.print(Text(manage.logs(sandbox_id, lines)))


@sandbox_app.command()
def stop(sandbox_id: str | None = typer.Argument(None, metavar="[ID]"),
         all_: bool = typer.Option(False, "--all", help="stop every sandbox")) -> None:
    """Stop a sandbox (or all of them) and delete its folders."""
    if all_ == (sandbox_id is not None):
        raise UsageError("pass either a sandbox ID or --all")
    if sandbox_id is not None:
        manage.stop(sandbox_id)
        out.print(f"stopped {sandbox_id}")
    else:
        out.print(f"stopped {len(manage.stop_all())} sandbox(es)")


def _render(result: ExecutionResult) -> None:
    for o in result.outputs:
        if o["type"] == "stream":
            (err if o["name"] == "stderr" else out).print(Text(o["text"].rstrip("\n")))
        elif o["type"] == "error":
            out.print(Text.from_ansi("\n".join(o.get("traceback") or [o["ename"]])))
        else:
            data = o.get("data", {})
            images = [m for m in data if m.startswith("image/")]
            if images:
                out.print(f"[dim][{images[0]} output: {len(data[images[0]])} base64 bytes; "
                          "use --json to get it][/]")
            elif "text/plain" in data:
                out.print(Text(data["text/plain"]))
    if result.message:
        err.print(Text(result.message, style="yellow"))


@sandbox_app.command("exec")
def exec_(
    args: list[str] = typer.Argument(None, metavar="[ID] [FILE]",
                                     help="a running sandbox's id and/or a Python file"),
    code: str | None = typer.Option(None, "--code", "-c", help="code to run"),
    as_json: bool = typer.Option(False, "--json", help="print the raw result as JSON"),
    timeout: float = typer.Option(60, help="seconds before the cell is interrupted"),
    backend: str | None = typer.Option(None, "--backend", "-b",
                                       help=f"for a one-shot sandbox: {BACKEND_HELP}"),
    dataset: list[Path] = typer.Option([], "--dataset", "-d", help="mounted at /data/<name>"),
    unsafe: bool = typer.Option(False, help="allow the unisolated local backend"),
) -> None:
    """Run code in a running sandbox (ID) or in a one-shot sandbox (no ID)."""
    args = list(args or [])
    known = {info.sandbox_id for info in manage.list_sandboxes()}
    sandbox_id = args.pop(0) if args and args[0] in known else None
    if len(args) > 1:
        raise UsageError(f"unexpected arguments {args[1:]}: pass [ID] and one FILE at most")
    if (code is None) == (not args):
        raise UsageError("pass the code with --code CODE or as a FILE (one of them)")
    if code is None:
        path = Path(args[0])
        if not path.is_file():
            raise UsageError(f"{path} is neither a running sandbox id nor a file")
        code = path.read_text()
    if sandbox_id is not None:
        with manage.attach(sandbox_id) as sb:
            result = sb.execute(code, timeout=timeout)
    else:
        _check_fits(dataset, None)
        with err.status("starting a one-shot sandbox…"):
            sb = open_sandbox(backend, dataset, unsafe=unsafe)
        with sb:
            result = sb.execute(code, timeout=timeout)
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        _render(result)
    if result.final_status != "ok":
        raise SandboxError(f"the code ended with status {result.final_status}")


def register(app: typer.Typer) -> None:
    """Attach `cellprompt sandbox …` to the root app."""
    app.add_typer(sandbox_app, name="sandbox")
