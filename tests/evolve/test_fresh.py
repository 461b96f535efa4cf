"""`cellprompt evolve --fresh`: one new dataset seed per evolution for tasks on generated data,
drawn as `run --fresh` draws it, kept in evolve.json and used by every trial (issue 17)."""

from __future__ import annotations

import pytest

from cellprompt.cli.evolve_cmd import fresh_seed
from cellprompt.datasets.generate import parse_ref
from cellprompt.errors import UsageError
from cellprompt.evolve.runner_evaluator import RunnerEvaluator
from cellprompt.runs.runner import create_run
from cellprompt.tasks import load_task
from tests.evolve.test_outputs import _cli

GEN = "gen-batch-clusters"


def test_fresh_draws_a_new_seed_per_evolution() -> None:
    seeds = {fresh_seed([GEN, "pbmc68k-qc-mito"]) for _ in range(5)}
    assert len(seeds) > 1


def test_fresh_without_generated_data_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="drop --fresh"):
        fresh_seed(["pbmc68k-qc-mito"])


def test_the_evaluator_runs_generated_tasks_on_the_recorded_seed(tmp_path) -> None:
    store = create_run(tmp_path, [], run_id="run")
    evaluator = RunnerEvaluator(model="reference", store=store, dataset_seed=12345)
    task = evaluator.task(GEN)
    assert parse_ref(task.dataset).params["seed"] == 12345
    assert parse_ref(task.dataset).params != parse_ref(load_task(GEN).dataset).params
    assert evaluator.task("pbmc68k-qc-mito").dataset == load_task("pbmc68k-qc-mito").dataset


def test_cli_fresh_mistakes_are_one_line(tmp_path) -> None:
    prompt = tmp_path / "seed.txt"
    prompt.write_text("You analyse single-cell data.")
    result = _cli("--objective", "x", "--prompt", str(prompt), "--task", "pbmc68k-qc-mito", "--model",
                  "reference", "--reflection-model", "openai:m", "--strategy", "iterative", "--budget", "50",
                  "--fresh", cwd=tmp_path)
    assert result.returncode == 2 and "drop --fresh" in result.stderr and "Traceback" not in result.stderr
    result = _cli("--resume", "evolve-x", "--fresh", cwd=tmp_path)
    assert result.returncode == 2 and "--fresh" in result.stderr
