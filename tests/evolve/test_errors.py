"""Errors are not scores: an outage is retried (bounded), else left out of the mean and counted
apart, and a resumed evolution retries it."""

from __future__ import annotations

from pathlib import Path

from cellprompt.evolve import start_evolution
from cellprompt.evolve.evaluator import ERROR_RETRIES, TrialBank
from cellprompt.evolve.folder import EvolutionFolder
from cellprompt.evolve.simulation import SEED_PROMPT, SimEvaluator, SimWorld
from cellprompt.records.run import TrialRecord
from tests.evolve.conftest import sim_config


class FlakyEvaluator(SimEvaluator):
    """The simulated world, whose sandbox fails the first `failures` tries of one trial."""

    def __init__(self, world: SimWorld, task: str, failures: int) -> None:
        super().__init__(world)
        self.task, self.failures, self.tries = task, failures, 0

    def evaluate(self, prompt: str, task_refs: list[str], replicates: int, *,
                 first_replicate: int = 0) -> list[TrialRecord]:
        records = super().evaluate(prompt, task_refs, replicates, first_replicate=first_replicate)
        out = []
        for r in records:
            if r.trial_id.startswith(f"{self.task}-r0-"):
                self.tries += 1
                if self.tries <= self.failures:
                    r = r.model_copy(update={"status": "error", "score": 0.0, "grades": [],
                                             "error": "sandbox: the kernel service did not start"})
            out.append(r)
        return out


def _bank(tmp_path: Path, evaluator: SimEvaluator, world: SimWorld) -> TrialBank:
    """A fresh evolution's trial bank, or (when the folder exists) a resumed one."""
    if (tmp_path / "evo").exists():
        return TrialBank(evaluator, EvolutionFolder(tmp_path / "evo"))
    return TrialBank(evaluator, start_evolution(sim_config(world, test=False), tmp_path))


def test_a_transient_outage_is_retried_and_scored(tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    tasks = world.split("val")
    flaky = FlakyEvaluator(world, tasks[0], failures=1)
    m = _bank(tmp_path, flaky, world).measure(SEED_PROMPT, tasks, 1)
    clean = _bank(tmp_path / "clean", SimEvaluator(world), world).measure(SEED_PROMPT, tasks, 1)
    assert flaky.tries == 2 and m.unscored == 0
    assert m.task_scores == clean.task_scores  # the retried trial counts like any other


def test_a_lasting_outage_is_left_out_counted_apart_and_retried_on_resume(tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    tasks = world.split("val")
    down = FlakyEvaluator(world, tasks[0], failures=100)
    m = _bank(tmp_path, down, world).measure(SEED_PROMPT, tasks, 1)
    assert down.tries == 1 + ERROR_RETRIES  # bounded
    assert m.unscored == 1 and m.task_scores[tasks[0]] == [] and m.trial_scores[0] is None
    others = [s for t in tasks[1:] for s in m.task_scores[t]]
    assert all(s is not None for s in m.trial_scores[1:]) and len(others) == len(tasks) - 1  # no 0 put in

    healthy = FlakyEvaluator(world, tasks[0], failures=0)  # the sandbox is back: resume retries it
    again = _bank(tmp_path, healthy, world).measure(SEED_PROMPT, tasks, 1)
    assert healthy.calls == 1 and again.unscored == 0 and len(again.task_scores[tasks[0]]) == 1
