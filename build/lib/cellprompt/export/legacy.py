"""Notebooks from the original tool's JSON logs, so old runs stay readable.

The original format is `{prompt_id: {"context": {...}, "turns": [{"role", "content"}]}}`:
assistant turns hold ```python blocks (run together, as one execution) and the next
user turn starting `Code execution result:` holds what that execution printed.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cellprompt.errors import UsageError

RESULT_PREFIX = "Code execution result:"
FENCE = re.compile(r"```python[^\n]*\n(.*?)```", re.S)
SECTION = re.compile(r"^--- (STDOUT|STDERR) ---$", re.M)


def _parse_result(text: str, base: Path) -> list[NotebookNode]:
    """The original feedback text back into stream outputs and (when the files survive) figures."""
    body = text[len(RESULT_PREFIX) :].lstrip("\n")
    images: list[str] = []
    match = re.search(r"^Saved images: (.*)$", body, flags=re.M)
    if match:
        images = [p.strip() for p in match.group(1).split(",") if p.strip()]
        body = body[: match.start()] + body[match.end() :]
    outputs: list[NotebookNode] = []
    pieces = SECTION.split(body)
    preamble = pieces[0].strip()
    if preamble:
        outputs.append(
            new_output("stream", name="stderr" if "[status" in preamble else "stdout", text=preamble + "\n")
        )
    for name, chunk in zip(pieces[1::2], pieces[2::2], strict=False):
        chunk = chunk.strip("\n")
        if chunk:
            outputs.append(new_output("stream", name=name.lower(), text=chunk + "\n"))
    for image in images:
        path = Path(image) if Path(image).is_absolute() else base / image
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            outputs.append(new_output("display_data", data={"image/png": data}, metadata={}))
        else:
            outputs.append(
                new_output("stream", name="stdout", text=f"[figure saved to {image}; file not found]\n")
            )
    return outputs


def legacy_to_notebook(prompt_id: str, entry: dict[str, Any], base: Path) -> NotebookNode:
    """One log entry as a notebook; prose stays markdown, code becomes cells with their outputs."""
    context = entry.get("context") or {}
    header = [f"# {prompt_id}", "", "Converted from a log of the original tool.", ""]
    header += [
        f"* **{key}:** {json.dumps(value, default=str) if not isinstance(value, str) else value}"
        for key, value in context.items()
    ]
    cells: list[NotebookNode] = [new_markdown_cell("\n".join(header))]
    turns = entry.get("turns") or []
    count = 0
    pending: NotebookNode | None = None
    for turn in turns:
        role, content = turn.get("role", ""), str(turn.get("content", ""))
        if role == "assistant":
            blocks = FENCE.findall(content)
            prose = FENCE.sub("", content).strip()
            if prose:
                cells.append(new_markdown_cell(prose))
            pending = None
            if blocks:
                count += 1
                pending = new_code_cell("\n".join(b.rstrip("\n") for b in blocks), execution_count=count)
                cells.append(pending)
        elif role == "user" and content.startswith(RESULT_PREFIX) and pending is not None:
            pending.outputs = _parse_result(content, base)
            pending = None
        else:
            cells.append(new_markdown_cell(f"**{role}:**\n\n{content}"))
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(nb)
    return nb


def convert_legacy_log(path: Path) -> list[Path]:
    """Write `<stem>_<prompt_id>.ipynb` beside the log for every entry; returns the paths written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path} is not a readable JSON log ({exc}); pass a run folder or a log file"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "turns" in v for v in data.values()):
        raise UsageError(
            f"{path} is not a log of the original tool: expected "
            '{prompt_id: {"context": {...}, "turns": [...]}}'
        )
    written = []
    for prompt_id, entry in data.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(prompt_id))
        out = path.with_name(f"{path.stem}_{safe}.ipynb")
        nbformat.write(legacy_to_notebook(str(prompt_id), entry, path.parent), str(out))
        written.append(out)
    return written
