"""`cellprompt run`'s exit codes, `--resume RUN --retry-errors`, the default prompt, unknown costs.

Trials here fail before any sandbox starts (the task's dataset file is missing), so these tests
need no sandbox backend and take seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

MISSING_DATA_TASK = """\
id: missing-data
title: a task whose dataset file is gone
dataset: {dataset}
objective: count the cells
answer:
  - {{name: n, type: integer}}
graders:
  - type: multiple_choice
    config: {{correct_answer: A}}
reference:
  cells:
    - "print(1)"
"""


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["CELLPROMPT_OUTPUTS_DIR"] = str(cwd / "default-outputs")
    return subprocess.run([sys.executable, "-m", "cellprompt.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_errored_trials_exit_1_and_retry_errors_runs_only_them(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(MISSING_DATA_TASK.format(dataset=tmp_path / "gone.h5ad"))
    elsewhere = tmp_path / "elsewhere"
    # no --prompt and no terminal: the built-in baseline, as a terminal would offer
    r = cli(["run", "--task", str(task), "--model", "reference", "--out", str(elsewhere)], tmp_path)
    assert r.returncode == 1, r.stderr
    assert "1 of 1 trial(s) ended in an error" in r.stderr and "gone.h5ad does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    (run_dir,) = elsewhere.iterdir()
    assert f"--resume {run_dir} --retry-errors" in r.stderr  # a hint that works after --out
    assert json.loads((run_dir / "specs.json").read_text())[0]["prompt_id"] == "baseline"

    def lines() -> int:
        return len((run_dir / "trials.jsonl").read_text().splitlines())

    r = cli(["run", "--resume", str(run_dir)], tmp_path)  # the errored trial counts as done
    assert r.returncode == 1 and lines() == 1, r.stderr
    r = cli(["run", "--resume", str(run_dir), "--retry-errors", "--base-url", "http://127.0.0.1:9/v1"],
            tmp_path)
    assert r.returncode == 1 and lines() == 2, r.stderr  # ran again; still no data
    assert json.loads((run_dir / "specs.json").read_text())[0]["base_url"] == "http://127.0.0.1:9/v1"
    r = cli(["run", "--resume", str(run_dir), "--model", "openai:gpt-4o"], tmp_path)
    assert r.returncode == 2 and "the run folder has its plan" in r.stderr


def test_unknown_cost_reads_unknown_not_zero(tmp_path: Path) -> None:
    from cellprompt.cli.run_cmd import summary_table
    from cellprompt.records.run import TrialRecord, TrialSpec
    from cellprompt.records.usage import Usage
    from cellprompt.runs.runner import create_run

    spec = TrialSpec(trial_id="t-r0-1", prompt_id="baseline", prompt="p", task_id="t", task_ref="t",
                     model="openai:a-model-with-no-price-listed-anywhere")
    store = create_run(tmp_path, [spec])
    store.append_trial(TrialRecord(trial_id=spec.trial_id, spec=spec, status="submitted",
                                   usage=Usage(input_tokens=10, cost_unknown=True)))
    console = Console(width=60, record=True)
    console.print(summary_table(store))
    text = console.export_text()
    assert "unknown" in text and "$0.0000" not in text
    assert "…" not in text  # a narrow console folds the model id, never cuts it
