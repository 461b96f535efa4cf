"""CLI: `cellprompt tasks list|show|validate|grade`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Column, Table

from cellprompt.cli.console import out
from cellprompt.errors import UsageError

tasks_app = typer.Typer(help="List, inspect, validate and grade tasks.", no_args_is_help=True)

DATASET_HELP = "Dataset ref for an scBench eval's data node (builtin:NAME, a .h5ad, census:ID)."


@tasks_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
             tasks_dir: Path | None = typer.Option(
                 None, "--tasks-dir", help="A folder of your own task files (default: ./tasks if "
                 "it exists).")) -> None:
    """The built-in tasks and your own (./tasks or --tasks-dir): id, category, difficulty,
    data source, title, and where each task comes from."""
    from cellprompt.datasets.resolve import data_source
    from cellprompt.tasks import builtin_tasks, load_tasks
    from cellprompt.tasks.calibration import load_calibration

    if tasks_dir is not None and not tasks_dir.is_dir():
        raise UsageError(f"--tasks-dir {tasks_dir} is not a folder: pass a folder of task files")
    folder = tasks_dir if tasks_dir is not None else (Path("tasks") if Path("tasks").is_dir() else None)
    rows = [(t, "builtin") for t in builtin_tasks()]
    if folder is not None:
        rows += [(t, str(folder)) for t in load_tasks([str(folder)])]
    rows.sort(key=lambda r: (r[0].metadata.category, r[0].id))
    calibration = load_calibration()  # built-in tasks' scores from their last validation
    def scores(t: Any, origin: str) -> Any:
        return calibration.get(t.id) if origin == "builtin" else None
    if as_json:
        out.print_json(json.dumps([{"id": t.id, "title": t.title,
                                    "category": t.metadata.category, "dataset": t.dataset,
                                    "source": data_source(t.dataset), "origin": origin,
                                    "difficulty": t.metadata.difficulty,
                                    "calibration": (c.model_dump() if (c := scores(t, origin))
                                                    else None)} for t, origin in rows]))
        return
    table = Table(Column("id", overflow="fold"), "category", "difficulty", "source", "origin",
                  "calibration", "title")
    for t, origin in rows:
        c = scores(t, origin)
        table.add_row(t.id, t.metadata.category, t.metadata.difficulty, data_source(t.dataset),
                      origin, c.summary() if c else "-", t.title)
    out.print(table)


@tasks_app.command("show")
def show_cmd(task: str = typer.Argument(..., help="Built-in id or task file."),
             dataset: str | None = typer.Option(None, "--dataset", help=DATASET_HELP),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything a task holds, as YAML (or JSON)."""
    from cellprompt.tasks import builtin_tasks, load_task
    from cellprompt.tasks.calibration import load_calibration

    t = load_task(task, dataset=dataset)
    data = t.model_dump(mode="json", exclude_none=True)
    if t.id == task and t.id in {b.id for b in builtin_tasks(include_knowledge_only=True)}:
        c = load_calibration().get(t.id)  # how its kit scored at its last validation
        data["calibration"] = c.model_dump(exclude_none=True) if c else "not validated yet"
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True,
                            width=100), highlight=False, markup=False, soft_wrap=True)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (objectives, code cells) as `|` blocks, as task files write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


@tasks_app.command("validate")
def validate_cmd(
    tasks: list[str] = typer.Argument(None, help="Built-in ids or task files."),
    all_: bool = typer.Option(False, "--all", help="Validate every built-in task."),
    backend: str = typer.Option("auto", "--backend", help="Sandbox backend."),
    dataset: str | None = typer.Option(None, "--dataset", help=DATASET_HELP),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Sandboxes run at once."),
    no_probes: bool = typer.Option(False, "--no-probes", help="Skip the generic cheat probes."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="File to record the scores in (default: the built-in "
        "calibration file when every task validated is a built-in one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON reports."),
) -> None:
    """Run each task's validity kit in the sandbox: reference, alternatives, wrong answers,
    null and cheat probes; one row per variant; exit 1 if any variant is off."""
    from cellprompt.tasks import builtin_tasks, load_tasks, validate_all
    from cellprompt.tasks.calibration import BUILTIN_CALIBRATION, record

    if all_ and tasks:
        raise UsageError("pass task ids/files or --all, not both")
    if not all_ and not tasks:
        raise UsageError("missing task: pass task ids or files, or --all")
    chosen = builtin_tasks() if all_ else load_tasks(tasks, dataset=dataset)
    started = time.monotonic()
    with out.status("validating") as status:
        reports = validate_all(chosen, backend=backend, jobs=jobs, with_probes=not no_probes,
                               progress=lambda msg: status.update(msg))
    builtin_ids = {t.id for t in builtin_tasks(include_knowledge_only=True)}
    if calibration is None and (all_ or all(name in builtin_ids for name in tasks)):
        calibration = BUILTIN_CALIBRATION
    if calibration is not None and not no_probes:  # scores of the whole kit only
        record(reports, calibration)
    if as_json:
        out.print_json(json.dumps([r.model_dump(mode="json") for r in reports]))
    else:
        out.print(validity_table(reports))
        off = sum(not v.ok for r in reports for v in r.variants)
        broken = [r.task_id for r in reports if not r.ok]
        out.print(f"{len(reports)} task(s), {sum(len(r.variants) for r in reports)} variants, "
                  f"{off} off; {time.monotonic() - started:.0f} s"
                  + (f"; broken: {', '.join(broken)}" if broken else ""))
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def validity_table(reports: list[Any]) -> Table:
    """Task x variant: score, verdict, expected, and why when the verdict is not expected."""
    table = Table(Column("task", overflow="fold"), Column("variant", overflow="fold"), "kind", "score",
                  "verdict", "expected", "", "detail")
    for r in reports:
        if not r.variants:
            table.add_row(r.task_id, "-", "-", "-", "-", "-", "[green]✓[/]" if r.ok else
                          "[red]✗[/]", "; ".join(r.problems))
        for v in r.variants:
            table.add_row(r.task_id, v.name, v.kind, f"{v.score:.2f}",
                          "pass" if v.passed else "fail", v.expect,
                          "[green]✓[/]" if v.ok else "[red]✗[/]",
                          "" if v.ok and v.kind != "reference" else v.detail)
    return table


def _read_answer(value: str) -> dict[str, Any] | None:
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--answer is neither a file nor JSON ({exc.msg}): pass a JSON object "
                         "or a file holding one") from None
    if answer is not None and not isinstance(answer, dict):
        raise UsageError("--answer must be a JSON object (field -> value) or null")
    return answer


@tasks_app.command("grade")
def grade_cmd(
    task: str = typer.Argument(..., help="Built-in id or task file."),
    answer: str = typer.Option(..., "--answer", help="The answer: JSON text or a JSON file."),
    workspace: Path | None = typer.Option(None, "--workspace",
                                          help="Folder holding the agent's files (CSV answers)."),
    backend: str = typer.Option("auto", "--backend", help="Sandbox backend (python_check)."),
    dataset: str | None = typer.Option(None, "--dataset", help=DATASET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Grade one answer against a task's graders and withheld truth."""
    from cellprompt.tasks import grade_task, load_task, materialise

    t = load_task(task, dataset=dataset)
    parsed = _read_answer(answer)
    mt = materialise(t)
    grades = grade_task(t, parsed, truth=mt.truth, workspace=workspace, mt=mt, backend=backend)
    passed = all(g.passed for g in grades)
    if as_json:
        out.print_json(json.dumps({"task": t.id, "passed": passed,
                                   "grades": [g.model_dump(mode="json") for g in grades]}))
        return
    table = Table("grader", "score", "passed", "reasoning")
    for g in grades:
        table.add_row(g.grader, f"{g.score:.3f}", "[green]yes[/]" if g.passed else "[red]no[/]",
                      g.reasoning)
    out.print(table)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.add_typer(tasks_app, name="tasks")
