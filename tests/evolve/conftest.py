"""Shared set-up: the simulated world (known true quality), its evaluator and reflection model."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.evolve import EvolveConfig
from cellprompt.evolve.simulation import SEED_PROMPT, SimWorld

OBJECTIVE = "Analyse single-cell RNA-seq data correctly and answer in the requested format."


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld(seed=3)


def sim_config(
    world: SimWorld,
    *,
    strategy: str = "iterative",
    budget: int = 200,
    replicates: int = 1,
    evolution_id: str = "evo",
    test: bool = True,
    **extra: object,
) -> EvolveConfig:
    return EvolveConfig(
        evolution_id=evolution_id,
        objective=OBJECTIVE,
        seed_prompt=SEED_PROMPT,
        train_tasks=world.split("train"),
        val_tasks=world.split("val"),
        test_tasks=world.split("test") if test else [],
        model="sim:agent",
        reflection_model="sim:reflection",
        strategy=strategy,
        budget_trials=budget,  # type: ignore[arg-type]
        replicates=replicates,
        max_prompt_words=300,
        **extra,
    )  # type: ignore[arg-type]


def read_png_magic(path: Path) -> bytes:
    return path.read_bytes()[:8]


from tests.fakes.fixtures import _fake_openai_server, fake_openai  # noqa: E402, F401
