"""`cellprompt demo`, the README's first command: offline, no key, the whole flow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cellprompt.tasks import builtin_tasks
from tests.conftest import require_sandbox_backend


@pytest.mark.slow
def test_demo_runs_the_suite_and_writes_notebooks_and_report(tmp_path: Path) -> None:
    require_sandbox_backend("bwrap")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["CELLPROMPT_DATASETS_DIR"] = str(tmp_path / "datasets")
    proc = subprocess.run([sys.executable, "-m", "cellprompt.cli.main", "demo", "--out",
                           str(tmp_path / "outputs"), "--sandbox", "bwrap"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [run_dir] = (tmp_path / "outputs").iterdir()
    report = run_dir / "report.html"
    assert f"report: {report}" in proc.stdout
    trials = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    assert {t["spec"]["task_id"] for t in trials} == {t.id for t in builtin_tasks()}
    assert all(t["status"] == "submitted" and t["passed"] for t in trials), [
        (t["spec"]["task_id"], t["error"], [g["reasoning"] for g in t["grades"]]) for t in trials
        if not t["passed"]]
    notebooks = sorted((run_dir / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == len(trials)
    for path in notebooks:
        nbformat.validate(nbformat.read(path, as_version=4))
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:""", page)  # self-contained
