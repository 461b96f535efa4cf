"""`cellprompt run`'s exit codes, `--resume RUN --retry-errors`, the default prompt, unknown costs.

Trials here end in an error from the model's server (the fake OpenAI server refuses every
completion after the preflight found the model): a real sandbox starts, no API is reached.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rich.console import Console

from tests.cli.subprocess_cli import TASK, cli
from tests.conftest import require_sandbox_backend
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Error, FakeRequest


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A run's trials start real sandboxes; the default outputs folder is not `--out`'s."""
    return cli(args, cwd, timeout=300, CELLPROMPT_OUTPUTS_DIR=str(cwd / "default-outputs"),
               CELLPROMPT_LLM_MAX_RETRIES="0", CELLPROMPT_SANDBOX_BACKEND="bwrap",
               CELLPROMPT_SANDBOX_MEMORY="2g")


def refuse(request: FakeRequest) -> Error:
    return Error(400, "the fake refuses this completion")


def test_errored_trials_exit_1_and_retry_errors_runs_only_them(tmp_path: Path,
                                                               fake_openai: FakeOpenAI) -> None:
    require_sandbox_backend("bwrap")
    fake_openai.policy = refuse
    task = tmp_path / "task.yaml"
    task.write_text(TASK.format(dataset="builtin:krumsiek11"))
    elsewhere = tmp_path / "elsewhere"
    model = ["--model", "openai:fake-agent", "--base-url", fake_openai.url]
    # no --prompt and no terminal: the built-in baseline, as a terminal would offer
    r = run_cli(["run", "--task", str(task), *model, "--out", str(elsewhere)], tmp_path)
    assert r.returncode == 1, r.stderr
    assert "1 of 1 trial(s) ended in an error" in r.stderr and "the fake refuses" in r.stderr
    assert "Traceback" not in r.stderr
    (run_dir,) = elsewhere.iterdir()
    assert f"--resume {run_dir} --retry-errors" in r.stderr  # a hint that works after --out
    specs = json.loads((run_dir / "specs.json").read_text())
    assert specs[0]["prompt_id"] == "baseline"

    def lines() -> int:
        return len((run_dir / "trials.jsonl").read_text().splitlines())

    r = run_cli(["run", "--resume", str(run_dir)], tmp_path)  # the errored trial counts as done
    assert r.returncode == 1 and lines() == 1, r.stderr
    # a dead server is found by the preflight, in one line, and the plan is left as it was
    r = run_cli(["run", "--resume", str(run_dir), "--retry-errors", "--base-url", "http://127.0.0.1:9/v1"],
            tmp_path)
    assert r.returncode == 1 and lines() == 1, r.stderr
    assert "cannot connect to http://127.0.0.1:9/v1" in r.stderr and "--base-url" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert json.loads((run_dir / "specs.json").read_text()) == specs
    other = FakeOpenAI()  # the same model at another server: a new connection flag is taken
    try:
        other.policy = refuse
        r = run_cli(["run", "--resume", str(run_dir), "--retry-errors", "--base-url", other.url], tmp_path)
        assert r.returncode == 1 and lines() == 2, r.stderr  # ran again; still refused
        assert len(other.requests) >= 1
    finally:
        other.close()
    assert json.loads((run_dir / "specs.json").read_text())[0]["base_url"] == other.url
    r = run_cli(["run", "--resume", str(run_dir), "--model", "openai:gpt-4o"], tmp_path)
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


def test_an_unpriced_model_costs_unknown_in_progress_summary_and_stats(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """The fake's model has no price: every cost the CLI prints for it reads "unknown", not $0."""
    from tests.fakes.script import Reply, submit

    require_sandbox_backend("bwrap")
    fake_openai.policy = lambda request: Reply(tool_calls=[submit({"n": 640})], input_tokens=50,
                                               output_tokens=5)
    task = tmp_path / "task.yaml"
    task.write_text(TASK.format(dataset="builtin:krumsiek11"))
    r = run_cli(["run", "-t", str(task), "-m", "openai:fake-unpriced-model", "--base-url", fake_openai.url,
             "--out", str(tmp_path / "runs")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unknown" in r.stderr and "$0.0000" not in r.stderr  # the progress bar
    assert "unknown" in r.stdout and "$0.0000" not in r.stdout  # the summary table
    (run_dir,) = (tmp_path / "runs").iterdir()
    table = run_cli(["report", str(run_dir), "-f", "table"], tmp_path)
    assert table.returncode == 0, table.stderr
    leaderboard = table.stdout.split("Per task")[0]
    assert "unknown" in leaderboard and "0.0000" not in leaderboard, table.stdout
    stats = run_cli(["report", str(run_dir), "-f", "json"], tmp_path)
    assert json.loads(stats.stdout)["by_prompt_model"][0]["cost_unknown"] is True
