"""Ctrl-C and crashes: a resumed evolution re-runs no trial and re-asks no reflection it already has."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cellprompt.evolve import EvolutionFolder, run_evolution, start_evolution
from cellprompt.evolve.simulation import SimEvaluator, SimReflectionModel, SimWorld
from cellprompt.records.run import TrialRecord
from tests.evolve.conftest import sim_config


class InterruptingEvaluator(SimEvaluator):
    """Raises KeyboardInterrupt (as Ctrl-C would) once `limit` trials have run."""

    def __init__(self, world: SimWorld, limit: int) -> None:
        super().__init__(world)
        self.limit = limit

    def evaluate(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> list[TrialRecord]:
        if self.calls + len(task_refs) * replicates > self.limit:
            raise KeyboardInterrupt
        return super().evaluate(prompt, task_refs, replicates, first_replicate=first_replicate)


@pytest.mark.parametrize("strategy", ["iterative", "gepa"])
def test_resume_after_an_interruption_runs_nothing_twice(
    world: SimWorld, tmp_path: Path, strategy: str
) -> None:
    config = sim_config(world, strategy=strategy, budget=200)
    folder = start_evolution(config, tmp_path)
    first = InterruptingEvaluator(world, limit=70)
    first_reflection = SimReflectionModel(seed=5)
    with pytest.raises(KeyboardInterrupt):
        run_evolution(folder, first, first_reflection)
    trials_before = len(folder.trials())
    replies_before = len(folder.replies())
    assert trials_before == first.calls > 0 and replies_before > 0
    assert not (folder.path / "summary.json").exists()

    resumed = SimEvaluator(world)
    reflection = SimReflectionModel(seed=5)
    summary = run_evolution(EvolutionFolder.open(config.evolution_id, tmp_path), resumed, reflection)

    keys = Counter((t.prompt_id, t.task_ref, t.replicate) for t in folder.trials())
    assert max(keys.values()) == 1
    stored = (folder.run_dir / "trials.jsonl").read_text().splitlines()
    assert len(stored) == len(keys)  # no trial stored twice, in the one store of the evolution
    assert not (folder.path / "trials.jsonl").exists()
    assert first.calls + resumed.calls == len(keys)  # and none simulated twice
    assert first.calls + resumed.calls <= config.budget_trials
    reply_keys = Counter(r.key for r in folder.replies())
    assert max(reply_keys.values()) == 1
    assert len(folder.replies()) == replies_before + reflection.calls  # cached replies were not re-asked
    lines = [json.loads(line) for line in folder.candidates_path.read_text().splitlines()]
    for line in lines:
        line.pop("at")
    assert len({json.dumps(line, sort_keys=True) for line in lines}) == len(lines)  # no step written twice
    assert summary.status == "finished" and (folder.path / "best_prompt.txt").exists()
    assert summary.cost.trials == len(keys)


def test_a_finished_evolution_resumed_costs_nothing(world: SimWorld, tmp_path: Path) -> None:
    config = sim_config(world, budget=150)
    folder = start_evolution(config, tmp_path)
    run_evolution(folder, SimEvaluator(world), SimReflectionModel(seed=2))
    best = (folder.path / "best_prompt.txt").read_text()
    again, reflection = SimEvaluator(world), SimReflectionModel(seed=99)
    summary = run_evolution(EvolutionFolder.open(folder.path), again, reflection)
    assert again.calls == 0 and reflection.calls == 0  # the whole path replays from the folder
    assert (folder.path / "best_prompt.txt").read_text() == best
    assert summary.best_id


def test_resume_refuses_a_folder_that_is_not_an_evolution(tmp_path: Path) -> None:
    from cellprompt.errors import EvolveError

    with pytest.raises(EvolveError, match="not an evolution folder"):
        EvolutionFolder.open("nope", tmp_path)
