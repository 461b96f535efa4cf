"""Resume is a replay: after SIGINT or SIGKILL a resumed evolution takes the same decisions, runs
the same trials and ships the same best prompt as an uninterrupted run with the same seed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cellprompt.evolve import STRATEGIES, EvolutionFolder, run_evolution, start_evolution
from cellprompt.evolve.simulation import SimEvaluator, SimReflectionModel, SimWorld
from cellprompt.llm.base import ChatReply, Message
from cellprompt.records.run import TrialRecord
from tests.evolve.conftest import sim_config

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 160


class SameAnswerReflection(SimReflectionModel):
    """The simulated reflection model, answering a request the same way whenever it is asked
    (as a temperature-0 model would), so an uninterrupted run is a fixed reference."""

    def complete(self, messages: list[Message], **kwargs: Any) -> ChatReply:
        digest = hashlib.sha256("\n".join(m.content for m in messages).encode()).hexdigest()
        self.rng = random.Random(digest)
        return super().complete(messages, **kwargs)


class SignallingEvaluator(SimEvaluator):
    """Sends this process `sig` once `limit` trials have run: a real Ctrl-C or kill -9."""

    def __init__(self, world: SimWorld, limit: int, sig: int) -> None:
        super().__init__(world)
        self.limit, self.sig = limit, sig

    def evaluate(self, prompt: str, task_refs: list[str], replicates: int, *,
                 first_replicate: int = 0) -> list[TrialRecord]:
        if self.calls + len(task_refs) * replicates > self.limit:
            os.kill(os.getpid(), self.sig)
        return super().evaluate(prompt, task_refs, replicates, first_replicate=first_replicate)


def child(strategy: str, out: str, limit: int, sig: int) -> None:
    """The interrupted first session (run in a subprocess, so SIGKILL kills only it)."""
    world = SimWorld(seed=3)
    folder = start_evolution(sim_config(world, strategy=strategy, budget=BUDGET), Path(out))
    run_evolution(folder, SignallingEvaluator(world, limit, sig), SameAnswerReflection(seed=5))


def _steps(folder: EvolutionFolder) -> list[dict]:
    lines = [json.loads(line) for line in folder.candidates_path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "at"} for line in lines]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_resume_after_a_signal_replays_the_uninterrupted_run(
    strategy: str, sig: int, tmp_path: Path
) -> None:
    world = SimWorld(seed=3)
    whole = start_evolution(sim_config(world, strategy=strategy, budget=BUDGET), tmp_path / "whole")
    reference = run_evolution(whole, SimEvaluator(world), SameAnswerReflection(seed=5))

    limit = len(whole.trials()) // 2
    args = f"{strategy!r}, {str(tmp_path / 'cut')!r}, {limit}, {int(sig)}"
    code = f"from tests.evolve.test_replay import child; child({args})"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if sig == signal.SIGINT:
        assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr
    else:
        assert done.returncode == -signal.SIGKILL, done.stderr
    cut = EvolutionFolder.open("evo", tmp_path / "cut")
    assert not (cut.path / "summary.json").exists() and 0 < len(cut.trials()) <= limit

    resumed_evaluator = SimEvaluator(world)
    summary = run_evolution(cut, resumed_evaluator, SameAnswerReflection(seed=5))
    assert _steps(cut) == _steps(whole)  # same decisions, in the same order, with the same state
    assert len(cut.trials()) == len(whole.trials())  # same trials, none run twice
    assert summary.best_id == reference.best_id and summary.best_val == reference.best_val
    assert (cut.path / "best_prompt.txt").read_text() == (whole.path / "best_prompt.txt").read_text()
    assert [p.best_val for p in cut.progress()] == [p.best_val for p in whole.progress()]
