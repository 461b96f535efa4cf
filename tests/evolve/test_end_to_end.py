"""A full `evolve` of each strategy on the built-in suite, through the fake OpenAI server.

The fake agent does what its system prompt says: told to compute the answer in
code it runs the task's reference analysis in a real sandbox and submits what
that prints; otherwise it guesses. The fake reflection model reads the real
reflection request and, when the evidence shows failed graders, adds that
instruction. The deliberately bad seed prompt must lose to the evolved one on
a held-out task, with real runner trials, real graders and real resume files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.config import reset_settings
from cellprompt.evolve import EvolveConfig, new_evolution_id, run_evolution, start_evolution
from cellprompt.evolve.reflection import CLOSE, OPEN, extract_prompt
from cellprompt.evolve.runner_evaluator import RunnerEvaluator
from cellprompt.llm import make_model
from cellprompt.tasks import load_task
from tests.fakes.script import FakeRequest, Reply, execute, submit

pytestmark = pytest.mark.slow

BAD_PROMPT = "You are a helpful assistant. Answer quickly from general knowledge; do not run code.\n"
GOOD_RULE = (
    "- Compute every answer field in code from the data, print it as JSON, then submit exactly that JSON."
)
TRAIN, VAL, TEST = ["pbmc68k-qc-mito"], ["pbmc68k-hvg"], ["pbmc68k-pca-variance"]


def _last_json(text: str | None) -> dict:
    for line in reversed((text or "").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def policy(request: FakeRequest) -> Reply:
    if request.model == "reflector":
        ask = request.user_texts[0]
        current = extract_prompt(ask, first=True) or ""
        new = current
        if "Failed graders:" in ask and GOOD_RULE not in current:
            new = current.rstrip("\n") + "\n" + GOOD_RULE
        return Reply(
            text=f"The agent guessed instead of computing.\n{OPEN}\n{new}\n{CLOSE}", output_tokens=80
        )
    first = request.user_texts[0]
    task = next(load_task(t) for t in TRAIN + VAL + TEST if load_task(t).objective.strip()[:60] in first)
    if GOOD_RULE[2:40] not in request.system:
        return Reply(tool_calls=[submit({"guess": 1})])
    cells = task.reference.cells if task.reference else []
    if request.turn < len(cells):
        return Reply(tool_calls=[execute(cells[request.turn])])
    return Reply(tool_calls=[submit(_last_json(request.last_tool_result))])


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CELLPROMPT_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    reset_settings()
    yield tmp_path
    reset_settings()


@pytest.mark.parametrize("strategy,budget", [("iterative", 16), ("gepa", 18)])
def test_evolve_improves_a_bad_prompt_through_the_fake_server(
    fake_openai, isolated: Path, strategy: str, budget: int
) -> None:
    fake_openai.policy = policy
    config = EvolveConfig(
        evolution_id=new_evolution_id(),
        objective="Answer single-cell questions correctly.",
        seed_prompt=BAD_PROMPT,
        train_tasks=TRAIN,
        val_tasks=VAL,
        test_tasks=TEST,
        model="openai:agent",
        reflection_model="openai:reflector",
        strategy=strategy,  # type: ignore[arg-type]
        budget_trials=budget,
        base_url=fake_openai.url,
        max_prompt_words=200,
    )
    folder = start_evolution(config, isolated / "outputs")
    evaluator = RunnerEvaluator(model=config.model, run_dir=folder.run_dir, base_url=config.base_url)
    reflection = make_model(config.reflection_model, base_url=config.base_url)

    summary = run_evolution(folder, evaluator, reflection)

    best = (folder.path / "best_prompt.txt").read_text(encoding="utf-8")
    assert GOOD_RULE in best
    assert summary.test is not None
    assert summary.test.seed.mean == 0.0 and summary.test.best.mean == 1.0
    run_trials = [json.loads(line) for line in (folder.run_dir / "trials.jsonl").read_text().splitlines()]
    assert {t["spec"]["task_id"] for t in run_trials} == set(TRAIN + VAL + TEST)
    assert len(run_trials) == summary.cost.trials <= budget
    reflections = [r for r in fake_openai.requests if r.model == "reflector"]
    assert reflections and "Failed graders:" in reflections[0].user_texts[0]
    test_objective = load_task(TEST[0]).objective.strip()[:60]
    assert not any(test_objective in r.user_texts[0] for r in reflections)
