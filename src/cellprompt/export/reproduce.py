"""Re-run a trial's notebook in a fresh sandbox and say, cell by cell, whether it reproduces.

nbclient runs *inside* the sandbox (it starts its own kernel there, on the sandbox's
private loopback), so the re-run has the same isolation and data as the trial had.
Sandboxes whose Python lacks nbclient (a slim Docker image) fall back to sending the
cells one by one through the sandbox's own `execute`; the report names the engine used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

import nbformat
from nbformat import NotebookNode
from pydantic import BaseModel, Field

from cellprompt.export.notebook import nb_outputs
from cellprompt.records.outputs import strip_ansi
from cellprompt.records.run import ExecutionRecord, TrialRecord
from cellprompt.records.versioned import Versioned
from cellprompt.sandbox.base import Mount, Sandbox

SCHEMA_VERSION = 1
NB_IN = ".cellprompt-repro.ipynb"
NB_OUT = ".cellprompt-repro.out.ipynb"
DONE = "CELLPROMPT_NBCLIENT_DONE"
ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
RUNNER = """
import nbformat
from nbclient import NotebookClient
nb = nbformat.read({src!r}, as_version=4)
NotebookClient(nb, timeout={timeout}, kernel_name="python3", allow_errors=True,
               resources={{"metadata": {{"path": "/workspace"}}}}).execute()
nbformat.write(nb, {dst!r})
print({done!r})
"""
LAUNCH = """
import subprocess, sys
try:
    import nbclient  # noqa: F401
except ImportError:
    print("NO_NBCLIENT")
else:
    r = subprocess.run([sys.executable, "-c", {runner!r}], capture_output=True, text=True, cwd="/workspace")
    print(r.stdout[-2000:]); print(r.stderr[-2000:])
"""


class CellCheck(BaseModel):
    index: int  # position among the notebook's code cells
    ran: bool  # executed without raising (or raised the same error as originally)
    matched: bool | None  # text outputs equal after normalisation; None when the cell had none
    original_error: str | None = None
    rerun_error: str | None = None
    figures: tuple[int, int] = (0, 0)  # images then and now
    original_text: str = ""
    rerun_text: str = ""


class ReproReport(Versioned):
    SCHEMA_VERSION = SCHEMA_VERSION
    schema_version: int = SCHEMA_VERSION
    notebook: str
    engine: Literal["nbclient", "sandbox-execute"]
    cells: list[CellCheck] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def ran(self) -> int:
        return sum(c.ran for c in self.cells)

    @property
    def matched(self) -> int:
        return sum(bool(c.matched) for c in self.cells)


def normalise(text: str) -> str:
    """Drop what differs between two faithful runs: colours, memory addresses, trailing blanks."""
    text = ADDRESS.sub("0x…", strip_ansi(text))
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _figures(outputs: list[Any]) -> int:
    return sum(1 for o in outputs if any(m.startswith("image/") for m in o.get("data", {})))


def outputs_text(outputs: list[Any]) -> tuple[str, str | None]:
    """The text a reader compares (streams, results, errors) and the error name, if any."""
    parts: list[str] = []
    error: str | None = None
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(out.get("text", ""))
        elif kind == "error":
            error = f"{out.get('ename')}: {out.get('evalue')}"
            parts.append(error)
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data and not any(m.startswith("image/") for m in data):
                parts.append(str(data["text/plain"]))
    return normalise("\n".join(parts)), error


def compare(original: NotebookNode, rerun_outputs: list[list[Any]]) -> list[CellCheck]:
    checks = []
    code = [c for c in original.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        before, before_error = outputs_text(cell.outputs)
        after, after_error = outputs_text(rerun_outputs[i]) if i < len(rerun_outputs) else ("", "not run")
        ran = after_error is None or after_error == before_error
        matched = None if not before and not after else before == after
        checks.append(
            CellCheck(
                index=i,
                ran=ran,
                matched=matched,
                original_error=before_error,
                rerun_error=after_error,
                original_text=before[:2000],
                rerun_text=after[:2000],
                figures=(_figures(cell.outputs), _figures(rerun_outputs[i]) if i < len(rerun_outputs) else 0),
            )
        )
    return checks


def _strip_outputs(nb: NotebookNode) -> NotebookNode:
    clean = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return clean


def _via_nbclient(sb: Sandbox, nb: NotebookNode, timeout: float) -> list[list[Any]] | None:
    sb.write_file(NB_IN, nbformat.writes(_strip_outputs(nb)).encode("utf-8"))
    runner = RUNNER.format(
        src=f"/workspace/{NB_IN}", dst=f"/workspace/{NB_OUT}", timeout=int(timeout), done=DONE
    )
    total = timeout * (1 + sum(1 for c in nb.cells if c.cell_type == "code")) + 60
    result = sb.execute(LAUNCH.format(runner=runner), timeout=total)
    if "NO_NBCLIENT" in result.text():
        return None
    if DONE not in result.text():
        raise RuntimeError(f"nbclient did not finish in the sandbox: {result.text()[-500:]}")
    done = nbformat.reads(sb.read_file(NB_OUT).decode("utf-8"), as_version=4)
    return [c.outputs for c in done.cells if c.cell_type == "code"]


def _via_execute(sb: Sandbox, nb: NotebookNode, timeout: float) -> list[list[Any]]:
    outputs = []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        r = sb.execute(cell.source, timeout=timeout)
        outputs.append(
            nb_outputs(
                ExecutionRecord(
                    code=cell.source,
                    outputs=r.outputs,
                    final_status=r.final_status,
                    execution_count=r.execution_count,
                )
            )
        )
    return outputs


def reproduce(
    nb: NotebookNode, name: str, open_sandbox: Callable[[], Any], *, timeout: float = 300
) -> ReproReport:
    """Re-run `nb` in a sandbox from `open_sandbox()` (a context manager) and compare outputs."""
    with open_sandbox() as sb:
        rerun = _via_nbclient(sb, nb, timeout)
        engine: Literal["nbclient", "sandbox-execute"] = "nbclient"
        notes = []
        if rerun is None:
            engine = "sandbox-execute"
            notes.append("nbclient is not installed in the sandbox; cells were sent through execute()")
            sb.restart()
            rerun = _via_execute(sb, nb, timeout)
    return ReproReport(notebook=name, engine=engine, cells=compare(nb, rerun), notes=notes)


def trial_mounts(record: TrialRecord) -> tuple[list[Mount], list[str]]:
    """The agent's copy of the trial's dataset, mounted where the trial saw it."""
    try:
        from cellprompt.tasks import load_task, materialise

        return [materialise(load_task(record.spec.task_ref)).mount()], []
    except Exception as exc:  # still re-run: cells that do not read the data can reproduce
        return [], [f"dataset of task {record.spec.task_ref} unavailable ({exc}); re-run without /data"]
