"""`cellprompt tasks new NAME`: a sealed task's scaffold with every slot, validity kit included;
`--open`: an open-analysis task file. Both to version and share."""

from __future__ import annotations

from pathlib import Path

import typer

from cellprompt.cli.ask_open import ask_datasets
from cellprompt.cli.console import out
from cellprompt.errors import UsageError


def register(app: typer.Typer) -> None:
    """Attach `new` to the `tasks` group (registered by tasks_cmd)."""
    from cellprompt.cli.tasks_cmd import tasks_app

    @tasks_app.command("new")
    def new_command(
        name: str | None = typer.Argument(None, help="Task id of a new sealed task (writes NAME.yaml)."),
        open_: bool = typer.Option(False, "--open", help="An open analysis, graded by the LLM judge."),
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="builtin:NAME, .h5ad, census:ID."),
        objective: str | None = typer.Option(None, "--objective", help="What to analyse (default: all)."),
        task_id: str | None = typer.Option(None, "--id", help="Task id (default open-<dataset>)."),
        title: str | None = typer.Option(None, "--title"),
        rubric: str | None = typer.Option(None, "--rubric", help="Extra criteria for the judge."),
        max_code_executions: int | None = typer.Option(None, "--max-code-executions", min=1),
        output: Path | None = typer.Option(None, "-o", "--output", help="File to write (default <id>.yaml)."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    ) -> None:
        """Write a task file; run it with `cellprompt run --task FILE --prompt P`."""
        from pydantic import ValidationError

        from cellprompt.datasets import resolve
        from cellprompt.runs.open_task import OPEN_RUBRIC, open_task, write_task
        from cellprompt.tasks import load_task

        if not open_:
            if name is None:
                raise UsageError("tasks new needs a NAME for a sealed task (tasks new my-task), or "
                                 "--open for an open analysis")
            path = _sealed_scaffold(name, output, force)
            load_task(str(path))  # the scaffold loads as it is, or this is a bug worth a traceback
            out.print(f"wrote {path}: fill its TODOs, then `cellprompt tasks validate {path}`",
                      highlight=False)
            return
        if name is not None:
            task_id = task_id or name
        ref = ask_datasets([dataset] if dataset else None, option="--dataset")[0]
        resolve(ref)  # the dataset must exist now, not when the task first runs
        try:
            task = open_task(ref, objective, task_id=task_id, title=title,
                             rubric=f"{OPEN_RUBRIC}\n{rubric}" if rubric else None,
                             max_code_executions=max_code_executions)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(f"invalid --{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        path = output or Path(f"{task.id}.yaml")
        if path.exists() and not force:
            raise UsageError(f"{path} already exists: pass --force to overwrite it, or -o another file")
        write_task(task, path)
        load_task(str(path))  # what was written loads back, or this is a bug worth a traceback
        out.print(f"wrote {path} (open task {task.id} on {ref}); run it with: cellprompt run --task "
                  f"{path} --prompt PROMPT --model MODEL", highlight=False)


def _sealed_scaffold(name: str, output: Path | None, force: bool) -> Path:
    """`NAME.yaml` from the sealed template: every slot filled with a loadable example."""
    import re
    from importlib.resources import files

    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise UsageError(f"task name {name!r} may hold only letters, digits, '.', '_' and '-'")
    path = output or Path(f"{name}.yaml")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists: pass --force to overwrite it, or -o another file")
    template = files("cellprompt.tasks").joinpath("templates/sealed.yaml").read_text(encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template.format(id=name, path=path), encoding="utf-8")
    return path
