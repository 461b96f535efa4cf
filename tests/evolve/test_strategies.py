"""Both strategies on the simulated world: they improve a bad prompt, honestly, within budget.

One conformance suite for every strategy (as for sandbox backends and chat models).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellprompt.evolve import STRATEGIES, EvolveEvent, run_evolution, start_evolution, text_id
from cellprompt.evolve.budget import plan_budget
from cellprompt.evolve.simulation import SEED_PROMPT, SimEvaluator, SimReflectionModel, SimWorld
from tests.evolve.conftest import read_png_magic, sim_config


@pytest.fixture(scope="module", params=sorted(STRATEGIES))
def finished(request: pytest.FixtureRequest, world: SimWorld, tmp_path_factory: pytest.TempPathFactory):
    strategy = request.param
    config = sim_config(world, strategy=strategy, budget=240)
    folder = start_evolution(config, tmp_path_factory.mktemp(strategy))
    evaluator = SimEvaluator(world)
    events: list[EvolveEvent] = []
    summary = run_evolution(folder, evaluator, SimReflectionModel(seed=3), on_event=events.append)
    return config, folder, summary, evaluator, events


def test_improves_a_bad_prompt_on_held_out_tasks(finished, world: SimWorld) -> None:
    _config, folder, summary, _, _ = finished
    best = (folder.path / "best_prompt.txt").read_text(encoding="utf-8")
    test = world.split("test")
    assert world.quality(best, test) > world.quality(SEED_PROMPT, test) + 0.15
    assert summary.best_id == text_id(best) != summary.seed_id


def test_stays_within_the_trial_budget(finished) -> None:
    config, _folder, summary, evaluator, events = finished
    assert evaluator.calls <= config.budget_trials
    assert summary.cost.trials == evaluator.calls
    search = plan_budget(config).search + plan_budget(config).confirm
    assert max(e.trials_used for e in events) <= config.budget_trials
    assert all(e.trials_used <= search for e in events if e.message != "")


def test_best_is_the_best_on_validation_not_the_last(finished) -> None:
    _, folder, summary, _, _ = finished
    val_means: dict[str, list[float]] = {}
    for rec in folder.candidates():
        if rec.split == "val" and rec.mean_score is not None:
            val_means.setdefault(rec.candidate_id, []).append(rec.mean_score)
    last_candidate = folder.candidates()[-1].candidate_id
    assert summary.best_id in val_means
    # the best is chosen on validation evidence: never a candidate never measured there
    assert all(rec.best_id in val_means for rec in folder.candidates() if rec.best_id)
    assert summary.best_val is not None and summary.best_val > (summary.seed_val or 0)
    assert last_candidate  # the file ends with a step (the best need not be it)


def test_writes_the_evolution_folder(finished) -> None:
    _config, folder, summary, _, _ = finished
    lines = [json.loads(line) for line in folder.candidates_path.read_text().splitlines()]
    assert lines and all(line["schema_version"] == 1 for line in lines)
    first = lines[0]
    assert first["origin"] == "seed" and first["text"] == SEED_PROMPT
    assert {"text", "parents", "task_scores", "usage", "trials_used"} <= set(first)
    children = [line for line in lines if line["origin"] != "seed"]
    assert children and all(line["parents"] for line in children if line["verdict"] != "flagged")
    lineage = json.loads((folder.path / "lineage.json").read_text())
    assert lineage["path_from_seed"][0] == summary.seed_id
    assert lineage["path_from_seed"][-1] == summary.best_id
    assert read_png_magic(folder.path / "progress.png") == b"\x89PNG\r\n\x1a\n"
    points = folder.progress()
    assert points[0].best_id == summary.seed_id
    assert [p.trials_used for p in points] == sorted(p.trials_used for p in points)


def test_reports_seed_and_best_side_by_side_on_test_tasks(finished, world: SimWorld) -> None:
    _config, folder, summary, _, _ = finished
    saved = json.loads((folder.path / "test_comparison.json").read_text())
    assert saved["tasks"] == world.split("test")
    assert saved["seed"]["candidate_id"] == summary.seed_id
    assert saved["best"]["candidate_id"] == summary.best_id
    assert set(saved["seed"]["task_scores"]) == set(world.split("test"))
    assert saved["delta"] == pytest.approx(saved["best"]["mean"] - saved["seed"]["mean"])
    assert summary.test is not None and summary.test.delta is not None and summary.test.delta > 0


def test_test_tasks_never_reach_the_reflection_model(finished, world: SimWorld) -> None:
    _, folder, _, _, _ = finished
    test_objectives = [world.tasks[t].objective for t in world.split("test")]
    assert folder.replies()  # replies were recorded
    for rec in folder.candidates():
        if rec.split in ("train", "val"):
            assert not set(rec.task_scores) & set(world.split("test"))
    for reply in folder.replies():
        assert not any(obj in reply.reply.message.content for obj in test_objectives)


def test_no_candidate_prompt_is_over_the_length_budget(finished) -> None:
    from cellprompt.evolve import word_count

    config, folder, _, _, _ = finished
    assert all(
        word_count(rec.text) <= config.max_prompt_words
        for rec in folder.candidates()
        if rec.verdict != "flagged"
    )


def test_strategies_are_registered() -> None:
    assert set(STRATEGIES) == {"iterative", "gepa"}


def test_gepa_stops_when_every_training_task_is_solved(tmp_path: Path) -> None:
    """gepa skips perfect minibatches and cached ones cost nothing: it must not spin forever."""
    from cellprompt.evolve.simulation import DECOY_RULES, USEFUL_RULES

    world = SimWorld(seed=0, p_hit=1.0, n_train=2, n_val=2, n_test=0, comfort_words=1000)
    perfect = "\n".join(r.line for r in (*USEFUL_RULES, *DECOY_RULES)) + "\n"
    assert world.quality(perfect, world.split("train") + world.split("val")) == 1.0
    config = sim_config(world, strategy="gepa", budget=400, test=False).model_copy(
        update={"seed_prompt": perfect}
    )
    folder = start_evolution(config, tmp_path)
    evaluator = SimEvaluator(world)
    summary = run_evolution(folder, evaluator, SimReflectionModel(seed=1))
    assert summary.best_id == text_id(perfect)
    assert evaluator.calls < 40  # stopped for idleness, long before the budget


def test_accounts_trials_tokens_and_cost(finished) -> None:
    _, folder, summary, evaluator, _ = finished
    # the simulated agent reports $0.01 and 2400 tokens per trial, the reflection model $0.02 per call
    assert summary.cost.agent.cost_usd == pytest.approx(0.01 * evaluator.calls)
    assert summary.cost.agent.input_tokens == 2000 * evaluator.calls
    assert summary.cost.reflection.cost_usd == pytest.approx(0.02 * len(folder.replies()))
    assert summary.cost.total_cost_usd == pytest.approx(
        summary.cost.agent.cost_usd + summary.cost.reflection.cost_usd
    )
    saved = json.loads((folder.path / "summary.json").read_text())
    assert saved["cost"]["trials"] == evaluator.calls and saved["schema_version"] == 1


def test_a_cost_cap_stops_proposing(world: SimWorld, tmp_path: Path) -> None:
    config = sim_config(world, budget=300, test=False, max_cost_usd=0.5)
    folder = start_evolution(config, tmp_path)
    evaluator = SimEvaluator(world)
    summary = run_evolution(folder, evaluator, SimReflectionModel(seed=3))
    assert summary.cost.total_cost_usd < 0.5 + 0.5  # at most one proposal past the cap
    assert evaluator.calls < 100
