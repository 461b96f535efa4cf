"""python_check runs in a sandbox of its own (bwrap), with truth and the agent's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.grading import grade
from tests.conftest import require_sandbox_backend

CHECK = """
import pandas as pd
labels = pd.read_csv("labels.csv", index_col=0).iloc[:, 0]
right = sum(labels[c] == v for c, v in truth["obs"]["ct"].items())
assert answer["n"] == len(labels), "count mismatch"
assert right == len(labels), f"{right} of {len(labels)} right"
print(_json.dumps({"right": int(right)}))
"""


@pytest.fixture(scope="module")
def backend() -> str:
    require_sandbox_backend("bwrap")
    return "bwrap"


def test_check_passes_fails_and_reads_files(tmp_path: Path, backend: str) -> None:
    truth = {"obs": {"ct": {"a": "T", "b": "B"}}}
    (tmp_path / "labels.csv").write_text("cell,label\na,T\nb,B\n")
    (tmp_path / "__truth__.json").write_text('{"obs": {"ct": {"a": "X", "b": "Y"}}}')  # forged
    g = {"type": "python_check", "config": {"code": CHECK, "timeout": 60}}
    ok = grade(g, {"n": 2}, truth, workspace=tmp_path, backend=backend)
    assert ok.passed and ok.metrics["right"] == 2, ok.reasoning
    bad = grade(g, {"n": 3}, truth, workspace=tmp_path, backend=backend)
    assert not bad.passed and "count mismatch" in bad.reasoning
    empty = tmp_path / "empty"
    empty.mkdir()
    none = grade(g, None, truth, workspace=empty, backend=backend)
    assert not none.passed and none.score == 0.0
