"""A kernel's output dicts as plain text: the one renderer every reader of a trial uses.

The model's feedback, the judge's transcript, the evolution's evidence and the report
all show what a cell printed; they differ in how much fits (`clip`'s limit and how much
of the head it keeps), never in what an output says. Outputs are the service's reply
dicts (`type`) or nbformat's (`output_type`); figures are named by a placeholder, and
terminal colour codes (IPython's tracebacks) are removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def clip(text: str, limit: int, *, head: float = 0.5) -> str:
    """`text` if it fits, else its start and end around a marker counting what was cut.

    `head` is the share of `limit` kept from the start: the start says what the code began
    doing, the end how it finished (a traceback's last line), so feedback keeps more tail.
    """
    if len(text) <= limit:
        return text
    kept_head = int(limit * head)
    kept_tail = limit - kept_head
    cut = len(text) - limit
    return f"{text[:kept_head]}\n… [{cut} characters omitted] …\n{text[len(text) - kept_tail:]}"


def output_text(output: Mapping[str, Any], *, figure: str = "[figure]") -> str:
    """One output as a reader of the notebook would see it; a figure is `figure`."""
    kind = output.get("type") or output.get("output_type")
    if kind == "stream":
        return str(output.get("text", ""))
    if kind == "error":
        traceback = "\n".join(strip_ansi(str(line)) for line in output.get("traceback") or [])
        return traceback or f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    if kind in ("execute_result", "display_data"):
        data = output.get("data") or {}
        if any(str(mime).startswith("image/") for mime in data):
            return figure
        return str(data.get("text/plain", ""))
    return ""


def outputs_text(outputs: Iterable[Mapping[str, Any]], *, figure: str = "[figure]") -> str:
    """Every output in order, one after the other (trailing newlines folded)."""
    parts = (output_text(out, figure=figure).rstrip("\n") for out in outputs)
    return "\n".join(p for p in parts if p)
