"""Trials that ended in an error (provider, sandbox, dataset, internal), grouped by kind.

Why: a run whose trials all failed used to exit 0 with a "0%" bar; the CLI now exits 1 and shows
the first error of each kind, so a wrong model name or a dead server reads as one line, not as a
score of zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cellprompt.records.run import TrialRecord

_INTERNAL = re.compile(r"internal error: (\w+(?:\.\w+)*):")


def error_kind(error: str | None) -> str:
    """A short name for the kind of an error message: the exception type of an internal error,
    else the text before the first colon ("model call failed", "sandbox died", …)."""
    text = (error or "unknown error").strip()
    if found := _INTERNAL.match(text):
        return found.group(1)
    head = text.split(":", 1)[0].strip()
    return head if head and len(head) <= 60 else "error"


def first_errors(records: Iterable[TrialRecord]) -> dict[str, tuple[str, int]]:
    """{kind: (first error message's first line, how many trials)} of the trials with status error."""
    found: dict[str, tuple[str, int]] = {}
    for record in records:
        if record.status != "error":
            continue
        kind = error_kind(record.error)
        first_line = (record.error or "unknown error").strip().splitlines()[0] if record.error else \
            "unknown error"
        message, count = found.get(kind, (f"{record.trial_id}: {first_line}", 0))
        found[kind] = (message, count + 1)
    return found
