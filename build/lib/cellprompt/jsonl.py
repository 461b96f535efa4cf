"""Append-only JSONL files of pydantic records: how runs and evolutions survive crashes.

Each record is one whole line written with one `write`, flushed and fsynced, so a
crash can leave at most a partial last line; reading skips that line with a
warning and keeps the rest.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from cellprompt.errors import CellpromptError

M = TypeVar("M", bound=BaseModel)


class TruncatedLineWarning(UserWarning):
    """A JSONL file ends in a partial line (a crash mid-write); the rest was kept."""


def append_line(path: Path, record: BaseModel) -> None:
    line = record.model_dump_json() + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_lines(path: Path, model: type[M], error: type[CellpromptError]) -> Iterator[M]:
    """Every record in order; a bad line other than a truncated last one raises `error`."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield model.model_validate_json(line)
        except ValidationError as exc:
            if number == len(lines) and not line.endswith("\n"):
                warnings.warn(f"{path}: line {number} is truncated (a crash mid-write); skipped",
                              TruncatedLineWarning, stacklevel=2)
                continue
            raise error(f"{path}: line {number} is not a valid record ({exc.errors()[0]['msg']}); "
                        "fix or remove that line") from exc
