"""CLI: `cellprompt datasets versions|list|show|download`, and an interactive Census browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cellprompt import datasets as ds
from cellprompt.cli.console import ask, interactive, out
from cellprompt.config import get_settings
from cellprompt.datasets.footprint import human
from cellprompt.errors import UsageError

datasets_app = typer.Typer(help="Built-in, local and CELLxGENE Census datasets.",
                           invoke_without_command=True, no_args_is_help=False)


def _json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _cells(n: int | None) -> str:
    return f"{n:,}" if n is not None else ""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


@datasets_app.callback()
def _browse(ctx: typer.Context) -> None:
    """With no command on a terminal: browse the Census and download a dataset."""
    if ctx.invoked_subcommand is not None:
        return
    if not interactive():
        raise UsageError("missing command: use one of versions, list, show, download "
                         "(see `cellprompt datasets --help`)")
    _interactive_browser()


@datasets_app.command("versions")
def versions_cmd(
    show_all: bool = typer.Option(False, "--all", help="Include retracted releases."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Census releases: build date, LTS, stable/latest aliases."""
    versions = ds.census_versions(include_retracted=show_all)
    if as_json:
        _json([v.model_dump() for v in versions])
        return
    table = Table(title="CELLxGENE Census releases")
    for column in ("Version", "Build", "Aliases", "LTS", "Stable", "Latest", "Retracted"):
        table.add_column(column)
    for v in versions:
        table.add_row(v.name, v.build, ", ".join(v.aliases), "yes" if v.lts else "",
                      "yes" if v.stable else "", "yes" if v.latest else "",
                      "[red]yes[/]" if v.retracted else "")
    out.print(table)


def _census_table(rows: list[ds.CensusDataset]) -> Table:
    table = Table(title=f"Census datasets ({len(rows)})")
    table.add_column("#", justify="right")
    table.add_column("Dataset id", overflow="fold", min_width=36)  # copied to download: keep whole
    table.add_column("Title")
    table.add_column("Collection")
    table.add_column("Organism")
    table.add_column("Cells", justify="right")
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), row.dataset_id, row.dataset_title, row.collection_name or "",
                      ", ".join(row.organism), _cells(row.dataset_total_cell_count))
    return table


@datasets_app.command("list")
def list_cmd(
    version: str | None = typer.Option(None, "--version", help="Census version (default stable)."),
    organism: str | None = typer.Option(None, help="e.g. homo_sapiens, human, mouse."),
    tissue: str | None = typer.Option(None, help="Text within a tissue name."),
    disease: str | None = typer.Option(None, help="Text within a disease name."),
    assay: str | None = typer.Option(None, help="Text within an assay name."),
    min_cells: int | None = typer.Option(None, "--min-cells", min=0),
    max_cells: int | None = typer.Option(None, "--max-cells", min=0),
    search: str | None = typer.Option(None, help="Text within title, collection or id."),
    limit: int | None = typer.Option(50, min=1, help="At most this many rows."),
    local: bool = typer.Option(False, "--local", help="List the datasets folder instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Census datasets matching the filters (or, with --local, what is already here)."""
    if local:
        found = ds.list_local(get_settings().datasets_dir)
        if as_json:
            _json([d.model_dump(mode="json") for d in found])
            return
        table = Table(title=f"Local datasets in {get_settings().datasets_dir}")
        for column in ("Name", "Source", "Title", "Cells", "Size", "Path"):
            table.add_column(column)
        for d in found:
            table.add_row(d.name, d.source, str(d.metadata.get("title", "")),
                          _cells(d.metadata.get("n_obs")), _size(d.size_bytes), str(d.path))
        out.print(table)
        return
    rows = ds.list_census_datasets(version, organism=organism, tissue=tissue, disease=disease,
                                   assay=assay, min_cells=min_cells, max_cells=max_cells,
                                   search=search, limit=limit)
    if as_json:
        _json([r.model_dump() for r in rows])
    else:
        out.print(_census_table(rows))


def _is_local_ref(ref: str) -> bool:
    return ref.startswith("builtin:") or ref.endswith(".h5ad") or Path(ref).exists()


@datasets_app.command("show")
def show_cmd(
    ref: str = typer.Argument(..., help="Census dataset id, builtin:NAME or a path to an .h5ad."),
    version: str | None = typer.Option(None, "--version", help="Census version (default stable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every metadata field of one dataset (local files are read without loading X)."""
    if _is_local_ref(ref):
        resolved = ds.resolve(ref)
        summary = ds.describe(resolved.path)
        if as_json:
            _json({"dataset": resolved.model_dump(mode="json"),
                   "summary": summary.model_dump(mode="json")})
            return
        table = Table(title=f"{resolved.name} ({resolved.source})", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        table.add_row("path", str(resolved.path))
        table.add_row("size", _size(summary.size_bytes))
        if summary.memory_bytes is not None:
            table.add_row("in memory", f"{human(summary.memory_bytes)} once loaded "
                          f"(sandbox limit {get_settings().sandbox_memory})")
        for key, value in resolved.metadata.items():
            if key not in ("schema_version", "name", "source") and value not in ([], ""):
                table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
        out.print(table)
        out.print(summary.as_text(resolved.name), highlight=False)
        return
    dataset_id, _, at_version = ref.removeprefix("census:").partition("@")
    detail = ds.show(dataset_id, version or at_version or None)
    if as_json:
        _json(detail.model_dump())
        return
    table = Table(title=detail.dataset_title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in detail.model_dump().items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else
                      _cells(value) if key == "dataset_total_cell_count" else str(value or ""))
    out.print(table)


def _download(dataset_id: str, version: str | None, to: Path | None) -> ds.ResolvedDataset:
    started = False
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=out,
                  transient=False) as bar:
        task = bar.add_task(f"{dataset_id[:18]}", total=None, visible=False)

        def progress(done: int, total: int | None) -> None:
            nonlocal started
            started = True
            bar.update(task, completed=done, total=total, visible=True)

        resolved = ds.download(dataset_id, version, to, progress)
    verb = "downloaded" if started else "already downloaded"
    out.print(f"{verb}: {resolved.path} (+ {resolved.path.with_suffix('.json').name})",
              highlight=False)
    return resolved


@datasets_app.command("download")
def download_cmd(
    dataset_id: str | None = typer.Argument(None, help="Census dataset id."),
    version: str | None = typer.Option(None, "--version", help="Census version (default stable)."),
    to: Path | None = typer.Option(None, "--to", help="Folder (default: the datasets folder)."),
) -> None:
    """The source .h5ad of one Census dataset plus a metadata .json."""
    dataset_id = ask(dataset_id, "DATASET_ID", "Census dataset id")
    dataset_id, _, at_version = dataset_id.removeprefix("census:").partition("@")
    _download(dataset_id, version or at_version or None, to)


def _interactive_browser() -> None:
    """Choose a version, filter, pick a row, download: the original tool's flow."""
    versions = ds.census_versions()
    names = [n for v in versions for n in (v.name, *v.aliases)]
    out.print(f"Census versions: {', '.join(names)}")
    version = ask(None, "--version", "Version", choices=names,
                  default="stable" if "stable" in names else names[0])
    filters = {key: ask(None, f"--{key}", f"{key.capitalize()} (blank for any)", default="")
               or None for key in ("organism", "tissue", "disease", "search")}
    rows = ds.list_census_datasets(version, limit=50, organism=filters["organism"],
                                   tissue=filters["tissue"], disease=filters["disease"],
                                   search=filters["search"])
    out.print(_census_table(rows))
    if not rows:
        return
    pick = ask(None, "DATASET", "Number to download (blank to quit)", default="")
    if not pick:
        return
    if not pick.isdigit() or not 1 <= int(pick) <= len(rows):
        raise UsageError(f"no row {pick!r}: choose a number from 1 to {len(rows)}")
    _download(rows[int(pick) - 1].dataset_id, version, None)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.add_typer(datasets_app, name="datasets")
