"""`schema_version` on every file: written always, and a newer one refused when read.

A file from a newer cellprompt may mean something this one would misread (a renamed
field silently defaulted, a score on another scale), so a reader stops at once with
one line saying which file and what to do, rather than showing numbers that may be
wrong.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ValidationError, field_validator


class Versioned(BaseModel):
    """Base of every model that is a file (or a JSONL line) of its own.

    Subclasses set `SCHEMA_VERSION` and declare `schema_version: int = SCHEMA_VERSION`;
    validation refuses any version above it.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    @field_validator("schema_version", check_fields=False)
    @classmethod
    def _not_newer(cls, version: int) -> int:
        if version > cls.SCHEMA_VERSION:
            raise ValueError(
                f"written by a newer cellprompt (schema_version {version}, this one reads up to "
                f"{cls.SCHEMA_VERSION}): upgrade cellprompt to read it")
        return version


def one_line(exc: ValueError) -> str:
    """The first reason a file failed validation, as one line (pydantic's own text spans many)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
