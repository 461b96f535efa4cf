"""Bounded collection of a cell's outputs: a flood of output must neither hang nor eat memory.

Each stream and each rich output is capped; what exceeds the cap is cut from the
middle (the start says what the code began doing, the end how it finished) and a
marker says how much was cut. The number of outputs and their total size are
capped too, so `display()` in a loop cannot grow the reply without bound: the
whole reply, every mimetype and every output's metadata included, stays under
`total_cap` bytes of JSON (the host refuses anything larger as hostile).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

DEFAULT_CAP = 1 << 20  # bytes per output (characters for text)
DEFAULT_TOTAL_CAP = 16 << 20  # bytes of JSON for all outputs of one execution
MAX_METADATA = 64 << 10  # bytes of JSON for one output's metadata
MAX_OUTPUTS = 1000
TEXT_MIMES_PREFIXES = ("text/", "application/json", "application/javascript", "image/svg+xml")


def _marker(cut: int) -> str:
    return f"\n...[{cut} characters cut from the middle of this output: it exceeded the output cap]...\n"


def truncate_middle(text: str, cap: int) -> str:
    """`text` if it fits, else its head and tail around a marker counting what was cut."""
    if len(text) <= cap:
        return text
    half = cap // 2
    return text[:half] + _marker(len(text) - 2 * half) + text[len(text) - half:]


class _CappedStream:
    """One stream output built from many chunks, keeping only a bounded head and tail."""

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.half = cap // 2
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.cut = 0

    def add(self, text: str) -> None:
        if self.head_len < self.half:
            room = self.half - self.head_len
            self.head.append(text[:room])
            self.head_len += min(room, len(text))
            text = text[room:]
            if not text:
                return
        self.tail.append(text)
        self.tail_len += len(text)
        while self.tail_len > self.half:
            excess = self.tail_len - self.half
            first = self.tail[0]
            if len(first) <= excess:
                self.tail.popleft()
                self.tail_len -= len(first)
                self.cut += len(first)
            else:
                self.tail[0] = first[excess:]
                self.tail_len -= excess
                self.cut += excess

    def size(self) -> int:
        return self.head_len + self.tail_len

    def render(self) -> dict[str, Any]:
        middle = _marker(self.cut) if self.cut else ""
        return {"type": "stream", "name": self.name,
                "text": "".join(self.head) + middle + "".join(self.tail)}


class OutputCollector:
    """The outputs of one execution, in order, merged and capped as nbformat would show them."""

    def __init__(self, cap: int = DEFAULT_CAP, max_outputs: int = MAX_OUTPUTS,
                 total_cap: int = DEFAULT_TOTAL_CAP) -> None:
        self.cap = cap
        self.total_cap = total_cap
        self.max_outputs = max_outputs
        self.items: list[_CappedStream | dict[str, Any]] = []
        self.dropped = 0

    def _room(self) -> bool:
        if len(self.items) < self.max_outputs:
            return True
        self.dropped += 1
        return False

    def stream(self, name: str, text: str) -> None:
        last = self.items[-1] if self.items else None
        if isinstance(last, _CappedStream) and last.name == name:
            last.add(text)
        elif self._room():
            current = _CappedStream(name, self.cap)
            current.add(text)
            self.items.append(current)

    def rich(self, kind: str, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        if not self._room():
            return
        capped: dict[str, Any] = {}
        for mime, value in data.items():
            text = value if isinstance(value, str) else str(value)
            if len(text) <= self.cap:
                capped[mime] = value
            elif mime.startswith(TEXT_MIMES_PREFIXES):
                capped[mime] = truncate_middle(text, self.cap)
            else:  # a cut image is no image: say what was dropped instead
                capped.setdefault("text/plain", f"[{mime} output of {len(text)} bytes omitted: "
                                                f"it exceeded the {self.cap}-byte output cap]")
        meta = metadata if isinstance(metadata, dict) else {}
        if len(json.dumps(meta, default=str)) > MAX_METADATA:
            meta = {"cellprompt_truncated": f"metadata over {MAX_METADATA} bytes dropped"}
        self.items.append({"type": kind, "data": capped, "metadata": meta})

    def error(self, ename: str, evalue: str, traceback: list[str]) -> None:
        if not self._room():
            return
        tb = [truncate_middle(line, self.cap) for line in traceback[-200:]]
        self.items.append({"type": "error", "ename": ename,
                           "evalue": truncate_middle(evalue, self.cap), "traceback": tb})

    def clear(self) -> None:
        self.items.clear()

    def render(self) -> list[dict[str, Any]]:
        """The outputs in order, cut where the reply would pass `total_cap` (marked)."""
        outs: list[dict[str, Any]] = []
        budget = self.total_cap - 4096  # room for the notes below and the reply's envelope
        over = 0
        for item in self.items:
            out = item.render() if isinstance(item, _CappedStream) else item
            size = len(json.dumps(out, default=str))
            if over or size > budget:
                over += 1
                continue
            budget -= size
            outs.append(out)
        if over:
            outs.append({"type": "stream", "name": "stderr",
                         "text": f"[{over} outputs dropped: this cell's outputs exceeded the "
                                 f"{self.total_cap}-byte reply cap]\n"})
        if self.dropped:
            outs.append({"type": "stream", "name": "stderr",
                         "text": f"[{self.dropped} further outputs dropped: more than "
                                 f"{self.max_outputs} outputs in one cell]\n"})
        return outs
