"""Writing files so a reader never sees half of one: temp file in the same folder, then rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

PUBLISHED_MODE = 0o644  # datasets are read by sandboxes that run as another user (docker)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Readers of `path` see either the old file or the new one, never a partial write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, PUBLISHED_MODE)  # mkstemp makes files private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_model(path: Path, model: BaseModel) -> None:
    atomic_write_bytes(path, (model.model_dump_json(indent=2, exclude_none=True) + "\n").encode())


def atomic_write_with(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Let a writer that only takes a path (e.g. `AnnData.write_h5ad`) write atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, PUBLISHED_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
