"""One store for an evolution's trials: the run folder `run/`, with the judge's evaluations beside
them, so the evolution report shows what the judge said (issue 14).

The judge is the real LLM judge (`grading.judge.judge_trial`) talking to the fake OpenAI server.
"""

from __future__ import annotations

import json
from pathlib import Path

from cellprompt.config import Settings
from cellprompt.evolve import EvolutionFolder, run_evolution, start_evolution
from cellprompt.evolve.report import write_report
from cellprompt.evolve.runner_evaluator import make_judge
from cellprompt.evolve.simulation import SimEvaluator, SimReflectionModel, SimWorld
from cellprompt.llm import make_model
from cellprompt.runs.store import RunStore
from tests.evolve.conftest import sim_config
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import FakeRequest, Reply

CRITERIA = ["correctness", "efficiency", "interpretation", "planning", "clarity", "overall_skill"]


def judge_policy(request: FakeRequest) -> Reply:
    criteria = [{"name": n, "score": 7.3, "comment": "fine"} for n in CRITERIA]
    return Reply(text=json.dumps({"criteria": criteria, "grade": 73, "comments": "a judged trial"}))


def test_trials_and_judge_verdicts_live_in_the_run_store_and_reach_the_report(
    fake_openai: FakeOpenAI, fast_llm_settings: Settings, tmp_path: Path
) -> None:
    fake_openai.policy = judge_policy
    world = SimWorld(seed=3, n_train=3, n_val=3, n_test=2)
    config = sim_config(world, budget=60, judge_model="openai:judge", judge_weight=0.3)
    folder = start_evolution(config, tmp_path)
    judge_model = make_model("openai:judge", base_url=fake_openai.url, settings=fast_llm_settings)
    judge = make_judge(judge_model, lambda ref: None, run_dir=folder.run_dir)
    evaluator = SimEvaluator(world)
    summary = run_evolution(folder, evaluator, SimReflectionModel(seed=1), judge=judge)

    assert not (folder.path / "trials.jsonl").exists()  # no second copy of the trials
    store = RunStore.open(folder.run_dir)
    trials, evaluations = store.trials(), store.evaluations()
    assert len(trials) == evaluator.calls == summary.cost.trials
    assert set(evaluations) == {t.trial_id for t in trials}  # every trial judged, in the run store
    assert all(e.ok and e.grade_mean == 73 for e in evaluations.values())
    assert summary.cost.judge.input_tokens > 0

    page = write_report(folder).read_text(encoding="utf-8")
    assert "73.0" in page and "Judge" in page  # the judge's grades, shown by the evolution report

    again = SimEvaluator(world)  # resumed: trials and verdicts are read back, nothing re-run or re-judged
    asked = len(fake_openai.requests)
    run_evolution(EvolutionFolder.open(folder.path), again, SimReflectionModel(seed=99), judge=judge)
    assert again.calls == 0 and len(fake_openai.requests) == asked
