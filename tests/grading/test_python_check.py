"""python_check runs in a sandbox of its own (bwrap), in an isolated interpreter, with truth
and only the agent files it declares."""

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
    g = {"type": "python_check", "config": {"code": CHECK, "timeout": 60, "files": ["labels.csv"]}}
    ok = grade(g, {"n": 2}, truth, workspace=tmp_path, backend=backend)
    assert ok.passed and ok.metrics["right"] == 2, ok.reasoning
    bad = grade(g, {"n": 3}, truth, workspace=tmp_path, backend=backend)
    assert not bad.passed and "count mismatch" in bad.reasoning
    empty = tmp_path / "empty"
    empty.mkdir()
    none = grade(g, None, truth, workspace=empty, backend=backend)
    assert not none.passed and none.score == 0.0


SPEARMAN = """
import pandas as pd
from scipy.stats import spearmanr
pt = pd.read_csv("pt.csv", index_col=0).iloc[:, 0]
cells = list(truth["time"])
rho = spearmanr([pt[c] for c in cells], [truth["time"][c] for c in cells])[0]
assert rho >= 0.8, f"rho {rho:.2f}"
"""


def test_workspace_modules_cannot_shadow_imports(tmp_path: Path, backend: str) -> None:
    """Issue 12: a workspace scipy/stats.py made a random pseudotime pass a task copy."""
    truth = {"time": {f"c{i}": i for i in range(30)}}
    (tmp_path / "pt.csv").write_text("cell,pt\n" + "".join(f"c{i},{(i * 7) % 30}\n" for i in range(30)))
    for name in ("scipy/stats.py", "scipy/__init__.py", "pandas.py", "json.py", "sitecustomize.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("def spearmanr(a, b):\n    return (1.0, 0.0)\n"
                                     "import sys; sys.modules.setdefault('x', None)\n")
    for files in (None, ["pt.csv", "scipy/stats.py", "scipy/__init__.py", "pandas.py", "json.py"]):
        config = {"code": SPEARMAN, "timeout": 60, **({"files": files} if files else {})}
        r = grade({"type": "python_check", "config": config}, {}, truth, workspace=tmp_path,
                  backend=backend)
        assert not r.passed, r.reasoning  # the real scipy ran: a random order fails
    ordered = tmp_path / "ordered"
    ordered.mkdir()
    (ordered / "pt.csv").write_text("cell,pt\n" + "".join(f"c{i},{i}\n" for i in range(30)))
    ok = grade({"type": "python_check", "config": {"code": SPEARMAN, "files": ["pt.csv"]}}, {},
               truth, workspace=ordered, backend=backend)
    assert ok.passed, ok.reasoning


def test_symlinked_files_are_not_copied(tmp_path: Path, backend: str) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("c0,T\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "labels.csv").symlink_to(secret)
    check = "import os\nassert not os.path.exists('labels.csv'), open('labels.csv').read()"
    r = grade({"type": "python_check", "config": {"code": check, "files": ["labels.csv"]}}, {},
              {}, workspace=ws, backend=backend)
    assert r.passed and "not a regular file" in r.reasoning
