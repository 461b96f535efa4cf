"""Gates that respect the noise, keep their evidence, and do not pay twice for one prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cellprompt.evolve import STRATEGIES, run_evolution, start_evolution
from cellprompt.evolve.reflection import CLOSE, OPEN, extract_prompt
from cellprompt.evolve.simulation import SimEvaluator, SimReflectionModel, SimWorld
from cellprompt.evolve.stats import Comparison
from cellprompt.llm.base import ChatReply, Message
from tests.evolve.conftest import sim_config


class ReflowingReflection(SimReflectionModel):
    """Returns the current prompt with its whitespace changed, and nothing else."""

    def complete(self, messages: list[Message], **kwargs: Any) -> ChatReply:
        self.calls += 1
        current = extract_prompt(next(m.content for m in messages if m.role == "user"), first=True) or ""
        reflowed = "\n\n".join(line.replace(" ", "  ") + " " for line in current.splitlines())
        return self._reply(f"Reworded.\n{OPEN}\n{reflowed}\n{CLOSE}", None)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_whitespace_variant_is_not_a_new_candidate(strategy: str, tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    folder = start_evolution(sim_config(world, strategy=strategy, budget=120, test=False), tmp_path)
    evaluator = SimEvaluator(world)
    run_evolution(folder, evaluator, ReflowingReflection(seed=1))
    measured = {c.candidate_id for c in folder.candidates() if c.trials}
    assert len(measured) == 1  # the seed only
    seed_trials = len(world.split("train")) + len(world.split("val"))
    assert evaluator.calls <= 2 * seed_trials  # the seed (and at most its fresh replicates), nothing else


def test_the_training_gate_rejects_only_beyond_the_noise() -> None:
    assert not Comparison(delta=-0.25, se=0.3, tasks=4).loses(1.0)  # one noisy replicate: not a verdict
    assert Comparison(delta=-0.25, se=0.1, tasks=4).loses(1.0)
    assert not Comparison(delta=0.0, se=float("inf"), tasks=0).loses(0.0)


def test_every_iterative_verdict_keeps_its_evidence(tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    folder = start_evolution(sim_config(world, budget=160, test=False), tmp_path)
    run_evolution(folder, SimEvaluator(world), SimReflectionModel(seed=3))
    verdicts = [c for c in folder.candidates()
                if c.verdict in ("accepted", "rejected") and c.origin != "seed"]
    assert verdicts and all(c.gate is not None for c in verdicts)
    for c in verdicts:
        assert c.gate is not None
        if c.verdict == "rejected" and c.split == "train":
            assert -c.gate["delta"] > c.gate["z"] * c.gate["se"]
        if c.verdict == "accepted":
            assert c.gate["delta"] > c.gate["z"] * c.gate["se"]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_early_stop_says_why(strategy: str, tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    folder = start_evolution(sim_config(world, strategy=strategy, budget=120, test=False), tmp_path / "a")
    repeats = run_evolution(folder, SimEvaluator(world), ReflowingReflection(seed=1))
    assert "nothing" in repeats.stop_reason or "in a row" in repeats.stop_reason, repeats.stop_reason
    folder = start_evolution(sim_config(world, strategy=strategy, budget=80, test=False), tmp_path / "b")
    spent = run_evolution(folder, SimEvaluator(world), SimReflectionModel(seed=3))
    assert "budget" in spent.stop_reason, spent.stop_reason


def test_a_perfect_seed_stops_at_once_and_says_so(tmp_path: Path) -> None:
    from cellprompt.evolve.simulation import DECOY_RULES, USEFUL_RULES

    world = SimWorld(seed=0, p_hit=1.0, n_train=2, n_val=2, n_test=0, comfort_words=1000)
    perfect = "\n".join(r.line for r in (*USEFUL_RULES, *DECOY_RULES)) + "\n"
    config = sim_config(world, budget=100, test=False).model_copy(update={"seed_prompt": perfect})
    model = SimReflectionModel(seed=1)
    summary = run_evolution(start_evolution(config, tmp_path), SimEvaluator(world), model)
    assert model.calls == 0 and "1.000" in summary.stop_reason


def test_overlapping_splits_are_warned_about(tmp_path: Path) -> None:
    from cellprompt.evolve.api import split_warnings

    world = SimWorld(seed=3)
    train = world.split("train")
    config = sim_config(world, budget=100, test=False).model_copy(
        update={"val_tasks": [train[0], *world.split("val")]}
    )
    assert any(train[0] in w and "both training and validation" in w for w in split_warnings(config))
    assert split_warnings(sim_config(world)) == []
    model = SimReflectionModel(seed=3)
    summary = run_evolution(start_evolution(config, tmp_path), SimEvaluator(world), model)
    assert summary.warnings == split_warnings(config)
