"""Reading the agent's answer files safely, and parsing per-cell tables with named problems.

The workspace folder on the host came out of the sandbox, so every component of a path
in it is hostile: a symlink could point at the host's truth file or at /dev/zero. Files
are opened with an openat-style walk (`O_NOFOLLOW` at every component, `O_NONBLOCK` so a
FIFO cannot hang us), must be regular files, and are read up to a cap.

Per-cell tables (`cell_id,label`, `cell_id,pseudotime`) are parsed into a mapping or a
one-line problem a reader can act on: tab-separated, swapped columns, duplicate ids,
ids that are not cells of the dataset, a missing column. Graders turn a problem into a
failed grade; they never raise on a malformed answer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

MAX_ANSWER_BYTES = 50 * 1024 * 1024


class UnsafePath(Exception):
    """The answer path is absent, escapes the workspace, or is not a plain regular file."""


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or rel.startswith("/"):
        raise UnsafePath(f"{rel}: not a plain relative path inside the workspace")
    return parts


def read_workspace_file(workspace: Path, rel: str, max_bytes: int = MAX_ANSWER_BYTES) -> bytes:
    """The bytes of `workspace/rel`, following no symlink at any component (`UnsafePath` else)."""
    parts = _parts(rel)
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(workspace, flags_dir)
    except OSError as exc:
        raise UnsafePath(f"{rel}: the workspace cannot be opened ({exc.strerror})") from None
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, flags_dir, dir_fd=fd)
            except OSError:
                raise UnsafePath(f"{rel}: not written (or {part} is a link, not a folder)") from None
            os.close(fd)
            fd = nxt
        try:
            ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)
        except FileNotFoundError:
            raise UnsafePath(f"{rel}: not written") from None
        except OSError:
            raise UnsafePath(f"{rel}: not a regular file (a symlink or special file)") from None
        with os.fdopen(ffd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{rel}: not a regular file")
            if st.st_size > max_bytes:
                raise UnsafePath(f"{rel}: {st.st_size} bytes, more than the {max_bytes} allowed")
            return fh.read(max_bytes + 1)[:max_bytes]
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def list_workspace_files(workspace: Path, max_bytes: int = MAX_ANSWER_BYTES) -> list[str]:
    """Relative paths of the regular files under `workspace`, never entering a symlink."""
    found: list[str] = []
    total = 0
    for root, dirs, files in os.walk(workspace, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for f in sorted(files):
            p = os.path.join(root, f)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if total > max_bytes:
                return found
            found.append(os.path.relpath(p, workspace))
    return found


@dataclass
class CellTable:
    """A parsed per-cell answer: values by cell id, or the problem that stopped parsing."""

    values: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    notes: list[str] = field(default_factory=list)  # problems that cost cells, not the grade


def _sniff_delimiter(first: str) -> str | None:
    if "," in first:
        return ","
    if "\t" in first:
        return "\t"
    if ";" in first:
        return ";"
    return None


def parse_cell_table(data: bytes, known: set[str], what: str, value_column: str | None = None,
                     name: str = "the file") -> CellTable:
    """`cell_id,<what>` rows (header optional) as {cell: value}; any shape problem is named."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return CellTable(problem=f"{name} is not UTF-8 text: write a CSV")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return CellTable(problem=f"{name} is empty")
    delim = _sniff_delimiter(lines[0])
    if delim == "\t":
        return CellTable(problem=f"{name} is tab-separated: write comma-separated values "
                                 f"(cell_id,{what})")
    if delim == ";":
        return CellTable(problem=f"{name} is semicolon-separated: write comma-separated values "
                                 f"(cell_id,{what})")
    if delim is None:
        return CellTable(problem=f"{name} has one column: write two, cell_id,{what}")
    rows = [r for r in csv.reader(io.StringIO("\n".join(lines))) if r]
    header: list[str] | None = None
    if rows[0] and rows[0][0].strip() not in known:
        header = [h.strip() for h in rows[0]]
        rows = rows[1:]
    id_col, val_col = 0, 1
    if header is not None:
        if value_column is not None and value_column in header:
            val_col = header.index(value_column)
        elif value_column is not None and len(header) > 2:
            return CellTable(problem=f"{name} has no column {value_column!r} (columns: "
                                     f"{', '.join(header[:6])})")
        for candidate in ("cell_id", "cell", "barcode", "obs_names", ""):
            if candidate in header and header.index(candidate) != val_col:
                id_col = header.index(candidate)
                break
    if not rows:
        return CellTable(problem=f"{name} has a header but no rows")
    width = max(id_col, val_col) + 1
    short = sum(len(r) < width for r in rows)
    if short == len(rows):
        return CellTable(problem=f"{name} has fewer than {width} columns: write cell_id,{what}")
    ids = [r[id_col].strip() for r in rows if len(r) >= width]
    hits = sum(i in known for i in ids)
    if hits == 0:
        swapped = sum(r[val_col].strip() in known for r in rows if len(r) >= width)
        if swapped:
            return CellTable(problem=f"{name} has its columns swapped: the cell ids are in column "
                                     f"{val_col + 1}; write cell_id first, then {what}")
        return CellTable(problem=f"{name}: none of its {len(ids)} ids is a cell of the dataset "
                                 "(use the obs names of the dataset as cell_id)")
    seen: dict[str, int] = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    dups = [i for i, n in seen.items() if n > 1]
    if dups:
        return CellTable(problem=f"{name} lists {len(dups)} cell id(s) more than once (e.g. "
                                 f"{dups[0]}): write one row per cell")
    values = {r[id_col].strip(): r[val_col].strip() for r in rows if len(r) >= width}
    notes = []
    unknown = len(ids) - hits
    if unknown:
        notes.append(f"{unknown} id(s) are not cells of the dataset")
    if short:
        notes.append(f"{short} row(s) have too few columns")
    return CellTable(values={k: v for k, v in values.items() if k in known}, notes=notes)
