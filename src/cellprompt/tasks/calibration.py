"""Calibration: how each task's reference, valid alternatives and wrong answers score.

A task's pass/fail verdicts say it *works*; the scores say how much room it has: a
reference at 0.94 against a 0.9 threshold, or a trap at 0.73 under a 0.75 one, is a task
one library release away from breaking. `tasks validate` writes the scores of every
validated task into one file (for built-in tasks `builtin/calibration.json`, versioned with
the tasks), and `tasks list` / `tasks show` read it back.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from cellprompt.datasets.files import atomic_write_bytes
from cellprompt.errors import TaskError
from cellprompt.records.versioned import Versioned, one_line

if TYPE_CHECKING:
    from cellprompt.tasks.validate import ValidationReport

BUILTIN_CALIBRATION = Path(__file__).parent / "builtin" / "calibration.json"


class TaskCalibration(BaseModel):
    """One task's scores (mean grader score per solution) from its last validation."""

    ok: bool  # every variant scored as expected
    reference: float | None = None
    alternatives: dict[str, float] = Field(default_factory=dict)
    wrong: dict[str, float] = Field(default_factory=dict)  # traps and degenerate answers
    null: float | None = None
    probes_max: float | None = None  # the best score any cheat probe reached
    validated_at: str = ""

    def summary(self) -> str:
        """One line: reference, the worst valid and the best wrong score."""
        parts = [f"ref {self.reference:.2f}" if self.reference is not None else "ref -"]
        if self.alternatives:
            parts.append(f"alt >={min(self.alternatives.values()):.2f}")
        if self.wrong:
            parts.append(f"wrong <={max(self.wrong.values()):.2f}")
        return " ".join(parts) + ("" if self.ok else " (off)")


class Calibration(Versioned):
    schema_version: int = 1
    tasks: dict[str, TaskCalibration] = Field(default_factory=dict)


def from_report(report: ValidationReport) -> TaskCalibration:
    """A validation report's scores, by kind of solution."""
    by_kind: dict[str, dict[str, float]] = {"alternative": {}, "wrong": {}, "probe": {}}
    reference = null = None
    for v in report.variants:
        if v.kind == "reference":
            reference = v.score
        elif v.kind == "null":
            null = v.score
        else:
            by_kind[v.kind][v.name] = v.score
    probes = by_kind["probe"]
    return TaskCalibration(ok=report.ok, reference=reference, alternatives=by_kind["alternative"],
                           wrong=by_kind["wrong"], null=null,
                           probes_max=max(probes.values()) if probes else None,
                           validated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def load_calibration(path: Path = BUILTIN_CALIBRATION) -> dict[str, TaskCalibration]:
    """Task id -> its calibration (empty when the file does not exist yet)."""
    if not path.is_file():
        return {}
    try:
        return Calibration.model_validate_json(path.read_text()).tasks
    except ValueError as exc:
        raise TaskError(f"calibration file {path} is unreadable ({one_line(exc)}): delete it and "
                        "run `cellprompt tasks validate` again") from None


def record(reports: list[ValidationReport], path: Path = BUILTIN_CALIBRATION) -> Path:
    """Merge the scores of `reports` into the file at `path` (tasks without variants skipped)."""
    tasks = load_calibration(path)
    tasks.update({r.task_id: from_report(r) for r in reports if r.variants})
    text = Calibration(tasks=dict(sorted(tasks.items()))).model_dump_json(indent=1) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())  # readers never see half a file
    return path


__all__ = ["BUILTIN_CALIBRATION", "Calibration", "TaskCalibration", "from_report",
           "load_calibration", "record"]
