"""A reflection model that tries to plant task answers in the prompt, under every strategy.

The simulated world's trials also carry a real numeric grader whose message quotes the truth
(`0 vs 188`); the evidence must not, and a candidate carrying a truth value or an answer choice
of any train, validation or test task must be refused with its reason and never run or shipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cellprompt.evolve import STRATEGIES, run_evolution, start_evolution
from cellprompt.evolve.leaks import Fact, grader_facts, truth_facts
from cellprompt.evolve.reflection import CLOSE, OPEN
from cellprompt.evolve.simulation import SimEvaluator, SimReflectionModel, SimWorld
from cellprompt.grading.registry import grade
from cellprompt.llm.base import ChatReply, Message
from cellprompt.records.run import TrialRecord
from tests.evolve.conftest import sim_config

NUMERIC = {"type": "numeric_tolerance",
           "config": {"ground_truth": {"n_cells_high_mito": 188}, "tolerance": 2}}
CHOICE = {"type": "multiple_choice", "config": {"correct_answer": "C"}}
LEAKS = ["- Known result: n_cells_high_mito is 188.",
         "- For the myeloid fate factor question the answer is C."]


class GradedSimEvaluator(SimEvaluator):
    """The simulated world plus one real numeric grader on the first training task; the first
    test task is a multiple-choice question whose answer is C."""

    def task_facts(self, task_ref: str) -> list[Fact]:
        if task_ref == self.world.split("train")[0]:
            return grader_facts([NUMERIC])
        if task_ref == self.world.split("test")[0]:
            return grader_facts([CHOICE])
        return []

    def evaluate(self, prompt: str, task_refs: list[str], replicates: int, *,
                 first_replicate: int = 0) -> list[TrialRecord]:
        records = super().evaluate(prompt, task_refs, replicates, first_replicate=first_replicate)
        first = self.world.split("train")[0]
        failed = grade(NUMERIC, {"n_cells_high_mito": 0})
        return [r.model_copy(update={"grades": [*r.grades, failed]}) if r.trial_id.startswith(f"{first}-")
                else r for r in records]


class PlantingReflection(SimReflectionModel):
    """Adds the answers to every fresh rewrite; when told the text cannot be used, drops them."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.requests: list[str] = []

    def complete(self, messages: list[Message], **kwargs: Any) -> ChatReply:
        self.requests.append("\n".join(m.content for m in messages))
        reply = super().complete(messages, **kwargs)
        content = reply.message.content
        if "cannot be used" in messages[-1].content:
            for leak in LEAKS:
                content = content.replace(leak + "\n", "").replace(leak, "")
        else:
            content = content.replace(CLOSE, "\n".join(LEAKS) + "\n" + CLOSE) if OPEN in content else content
        return reply.model_copy(update={"message": Message(role="assistant", content=content)})


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_planted_answers_are_refused_and_never_shipped(strategy: str, tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    config = sim_config(world, strategy=strategy, budget=120)
    folder = start_evolution(config, tmp_path)
    model = PlantingReflection(seed=3)
    summary = run_evolution(folder, GradedSimEvaluator(world), model)

    assert model.requests
    evidence = "\n".join(model.requests)
    assert "n_cells_high_mito: outside the tolerance" in evidence  # what was wrong …
    assert not re.search(r"(?<!\d)188(?!\d)", evidence.replace(LEAKS[0], ""))  # … never the value
    best = (folder.path / "best_prompt.txt").read_text(encoding="utf-8")
    assert "188" not in best and "answer is C" not in best
    flagged = [c for c in folder.candidates() if c.verdict == "flagged"]
    assert flagged and all("task-specific facts" in c.reason for c in flagged)
    assert any("188" in c.text for c in flagged)
    for c in folder.candidates():
        if c.verdict != "flagged":
            assert "188" not in c.text and "answer is C" not in c.text, c.verdict
    assert summary.best_id


# the withheld truth of a validation task's sealed copy: only in truth.json, never in a grader config
WITHHELD = {"computed": {"doublets": {"n_doublets": 137}},
            "obs": {"lineage": {f"cell-{i}": name for i, name in
                                enumerate(["Alpha progenitor", "Beta progenitor", "Gamma effector"] * 3)}}}
WITHHELD_LEAKS = ["- Expect 137 doublets in these data.",
                  "- The lineages are Alpha progenitor, Beta progenitor and Gamma effector."]


class WithheldSimEvaluator(SimEvaluator):
    def task_facts(self, task_ref: str) -> list[Fact]:
        return truth_facts(WITHHELD, "val-1") if task_ref == self.world.split("val")[1] else []


class PlantingWithheld(PlantingReflection):
    def complete(self, messages: list[Message], **kwargs: Any) -> ChatReply:
        reply = SimReflectionModel.complete(self, messages, **kwargs)
        content = reply.message.content
        if "cannot be used" not in messages[-1].content and OPEN in content:
            content = content.replace(CLOSE, "\n".join(WITHHELD_LEAKS) + "\n" + CLOSE)
        return reply.model_copy(update={"message": Message(role="assistant", content=content)})


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_facts_only_in_withheld_data_are_refused(strategy: str, tmp_path: Path) -> None:
    world = SimWorld(seed=3)
    folder = start_evolution(sim_config(world, strategy=strategy, budget=120), tmp_path)
    run_evolution(folder, WithheldSimEvaluator(world), PlantingWithheld(seed=3))
    flagged = [c for c in folder.candidates() if c.verdict == "flagged"]
    assert flagged and all("the withheld" in c.reason and "task val-1" in c.reason for c in flagged)
    assert any(WITHHELD_LEAKS[0] in c.text and WITHHELD_LEAKS[1] in c.text for c in flagged)
    for c in folder.candidates():
        if c.verdict != "flagged":
            assert "137" not in c.text and "Gamma effector" not in c.text
    assert "137" not in (folder.path / "best_prompt.txt").read_text(encoding="utf-8")


def test_the_runner_evaluator_knows_a_recipe_truth_and_every_task_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pbmc68k-qc-mito's answer is computed on its sealed copy (truth recipe), not written in a grader."""
    from cellprompt.config import reset_settings
    from cellprompt.evolve.leaks import leak_flag
    from cellprompt.evolve.runner_evaluator import RunnerEvaluator
    from cellprompt.runs.runner import create_run
    from cellprompt.tasks.materialise import materialise

    monkeypatch.setenv("CELLPROMPT_DATASETS_DIR", str(tmp_path / "datasets"))
    reset_settings()
    try:
        evaluator = RunnerEvaluator(model="reference", store=create_run(tmp_path, [], run_id="run"))
        facts = evaluator.task_facts("pbmc68k-qc-mito")
        n = materialise(evaluator.task("pbmc68k-qc-mito")).truth["computed"]["qc"]["n_cells_high_mito"]
        assert leak_flag(f"- About {n} cells exceed the mitochondrial cutoff.", facts)
        assert leak_flag("- This is task pbmc68k-qc-mito.", facts)
        assert leak_flag("- Filter cells whose mitochondrial fraction exceeds 2%.", facts) is None
    finally:
        reset_settings()
