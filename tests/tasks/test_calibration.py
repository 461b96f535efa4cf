"""Calibration (issue 17): `tasks validate` records how each kit scored; list/show read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.errors import TaskError
from cellprompt.tasks import ValidationReport, VariantResult
from cellprompt.tasks.calibration import load_calibration, record


def _variant(name: str, kind: str, expect: str, score: float) -> VariantResult:
    passed = expect == "pass"
    return VariantResult(name=name, kind=kind, expect=expect, passed=passed, ok=True, score=score)


def _report(task_id: str, ref: float, trap: float) -> ValidationReport:
    return ValidationReport(task_id=task_id, ok=True, variants=[
        _variant("reference", "reference", "pass", ref),
        _variant("other-seed", "alternative", "pass", 0.95),
        _variant("trap-x", "wrong", "fail", trap),
        _variant("null", "null", "fail", 0.0),
        _variant("cheat-row-order", "probe", "fail", 0.1)])


def test_scores_are_written_merged_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    assert load_calibration(path) == {}
    record([_report("a", 1.0, 0.7)], path)
    record([_report("b", 0.98, 0.4), ValidationReport(task_id="open", ok=True)], path)
    got = load_calibration(path)
    assert set(got) == {"a", "b"}  # merged; a task without variants is not recorded
    a = got["a"]
    assert (a.reference, a.alternatives, a.wrong, a.null, a.probes_max) == (
        1.0, {"other-seed": 0.95}, {"trap-x": 0.7}, 0.0, 0.1)
    assert a.summary() == "ref 1.00 alt >=0.95 wrong <=0.70"
    record([_report("a", 0.9, 0.2)], path)  # a new validation replaces the old scores
    assert load_calibration(path)["a"].reference == 0.9


def test_unreadable_or_newer_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text('{"schema_version": 99, "tasks": {}}')
    with pytest.raises(TaskError, match="newer cellprompt"):
        load_calibration(path)
