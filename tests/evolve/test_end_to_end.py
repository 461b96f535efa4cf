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
from cellprompt.evolve.report import write_report
from cellprompt.evolve.runner_evaluator import RunnerEvaluator
from cellprompt.llm import make_model
from cellprompt.llm.reference import last_json_object
from cellprompt.tasks import load_task
from tests.fakes.script import FakeRequest, Reply, execute, submit

pytestmark = pytest.mark.slow

BAD_PROMPT = "You are a helpful assistant. Answer quickly from general knowledge; do not run code.\n"
GOOD_RULE = (
    "- Compute every answer field in code from the data, print it as JSON, then submit exactly that JSON."
)
TRAIN, VAL, TEST = ["pbmc68k-qc-mito"], ["pbmc68k-hvg"], ["pbmc68k-pca-variance"]


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
    return Reply(tool_calls=[submit(last_json_object(request.last_tool_result or "") or {})])


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in datasets are materialised once for both strategies."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def isolated(tmp_path: Path, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CELLPROMPT_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("CELLPROMPT_DATASETS_DIR", str(datasets_dir))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    reset_settings()
    yield tmp_path
    reset_settings()


def _check(folder: Path, summary_test: dict, fake_openai, budget: int) -> None:
    best = (folder / "best_prompt.txt").read_text(encoding="utf-8")
    assert GOOD_RULE in best
    assert summary_test["seed"]["mean"] == 0.0 and summary_test["best"]["mean"] == 1.0
    run_trials = [json.loads(line) for line in (folder / "run" / "trials.jsonl").read_text().splitlines()]
    assert {t["spec"]["task_id"] for t in run_trials} == set(TRAIN + VAL + TEST)
    assert len(run_trials) <= budget
    reflections = [r for r in fake_openai.requests if r.model == "reflector"]
    assert reflections and "Failed graders:" in reflections[0].user_texts[0]
    test_objective = load_task(TEST[0]).objective.strip()[:60]
    assert not any(test_objective in r.user_texts[0] for r in reflections)


def test_gepa_improves_a_bad_prompt_through_the_fake_server(fake_openai, isolated: Path) -> None:
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
        strategy="gepa",
        budget_trials=18,
        base_url=fake_openai.url,
        max_prompt_words=200,
    )
    folder = start_evolution(config, isolated / "outputs")
    evaluator = RunnerEvaluator(model=config.model, store=folder.run_store(), base_url=config.base_url)
    reflection = make_model(config.reflection_model, base_url=config.base_url)

    summary = run_evolution(folder, evaluator, reflection)

    assert summary.test is not None
    _check(folder.path, summary.test.model_dump(), fake_openai, 18)
    assert summary.cost.trials == len((folder.run_dir / "trials.jsonl").read_text().splitlines())
    page = write_report(folder).read_text(encoding="utf-8")
    assert "best validation score against trials used" in page and "data:image/png;base64," in page
    assert "diff_add" in page  # the seed-vs-best diff shows the added rule


def test_cli_evolve_iterative_improves_a_bad_prompt(fake_openai, isolated: Path) -> None:
    from typer.testing import CliRunner

    from cellprompt.cli.main import app

    fake_openai.policy = policy
    seed = isolated / "bad.txt"
    seed.write_text(BAD_PROMPT)
    args = [
        "evolve",
        "--objective",
        "Answer single-cell questions correctly.",
        "--prompt",
        str(seed),
        "--task",
        TRAIN[0],
        "--val-task",
        VAL[0],
        "--test-task",
        TEST[0],
        "--model",
        "openai:agent",
        "--reflection-model",
        "openai:reflector",
        "--strategy",
        "iterative",
        "--budget",
        "16",
        "--base-url",
        fake_openai.url,
        "--max-words",
        "200",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = next((isolated / "outputs").iterdir())
    assert "best − seed = +1.000" in " ".join(result.output.split()), result.output
    _check(folder, json.loads((folder / "test_comparison.json").read_text()), fake_openai, 16)
