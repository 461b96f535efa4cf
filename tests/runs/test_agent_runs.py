"""Trials end to end: the real openai client → fake server, the real bwrap sandbox, real grading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellprompt.errors import MissingAPIKeyError
from cellprompt.records.run import Limits, TrialRecord
from cellprompt.runs.runner import create_run, plan_trials, run
from cellprompt.runs.store import RunStore
from cellprompt.sandbox import ScriptedSandbox
from tests.fakes.script import Call, Error, FakeRequest, Hang, Reply
from tests.runs.conftest import QUICK_TASK, last_json, reference_cells, solving_policy

PROMPT = "You are a careful single-cell analyst. SYSTEM-PROMPT-MARKER"


def run_one(outputs: Path, url: str, *, limits: Limits | None = None, replicates: int = 1,
            tasks: list[str] | None = None, parallel: int = 1,
            sandbox: ScriptedSandbox | None = None) -> tuple[RunStore, list[TrialRecord]]:
    """A run on bwrap, or on `sandbox` (a scripted one) when the kernel is not under test."""
    specs = plan_trials(prompts={"p": PROMPT}, tasks=tasks or [QUICK_TASK], models=["openai:fake-model"],
                        replicates=replicates, limits=limits, sandbox_backend="bwrap", base_url=url)
    store = create_run(outputs, specs)
    run(specs, store, parallel=parallel, provider=None if sandbox is None else lambda b, m: sandbox)
    return store, store.trials()


def test_tool_calling_agent_solves_task(run_env: Path, fake_openai) -> None:
    fake_openai.policy = solving_policy()
    store, [trial] = run_one(run_env, fake_openai.url)

    assert trial.status == "submitted" and trial.passed and trial.score == 1.0
    assert [len(t.executions) for t in trial.turns] == [1, 1, 0]
    assert trial.turns[0].executions[0].final_status == "ok"
    assert "n_counts" in trial.turns[0].feedback
    assert "/data/pbmc68k_reduced.h5ad" in trial.first_message and "percent_mito" in trial.first_message
    first = fake_openai.requests[0]
    assert first.system == PROMPT
    assert set(first.tool_names) == {"execute_python", "submit_answer"}
    assert "bulk_labels" in first.user_texts[0]  # the data description reached the model
    manifest = store.manifest()
    assert manifest.status == "finished" and manifest.total_trials == 1
    assert manifest.versions["cellprompt"]
    assert trial.usage.input_tokens == 300 and trial.usage.output_tokens == 60  # 3 calls × fake usage


def test_fenced_code_agent_runs_every_block(run_env: Path, fake_openai) -> None:
    cells = reference_cells()

    def policy(request: FakeRequest) -> Reply:
        if request.turn == 0:
            blocks = "\n".join(f"```python\n{c}\n```\nthen\n" for c in cells)
            return Reply(text=f"Plan: two steps.\n{blocks}")
        answer = last_json(request.last_user_text)
        return Reply(text=f"Done.\n<EVAL_ANSWER>{json.dumps(answer)}</EVAL_ANSWER>")

    fake_openai.policy = policy
    _, [trial] = run_one(run_env, fake_openai.url)
    assert trial.status == "submitted" and trial.passed, trial.error
    assert [e.code.strip() for e in trial.turns[0].executions] == [c.strip() for c in cells]
    assert trial.turns[0].feedback.count("Code execution result:") == 2


def test_model_that_never_writes_code_ends_at_turn_limit(scripted_env: Path, fake_openai) -> None:
    fake_openai.policy = lambda request: Reply(text="I would cluster the cells with Leiden.")
    sandbox = ScriptedSandbox()
    _, [trial] = run_one(scripted_env, fake_openai.url, limits=Limits(max_turns=3), sandbox=sandbox)
    assert sandbox.executed == [] and sandbox.closed
    assert trial.status == "limit_reached" and trial.limit == "max_turns", trial.error
    assert len(trial.turns) == 3 and not trial.passed and trial.score == 0.0
    assert "No tool was called" in fake_openai.requests[1].user_texts[-1]


def test_code_execution_limit(scripted_env: Path, fake_openai) -> None:
    fake_openai.policy = lambda request: Reply(tool_calls=[Call("execute_python", {"code": "print(1)"})])
    sandbox = ScriptedSandbox(lambda code: "1\n")
    _, [trial] = run_one(scripted_env, fake_openai.url, limits=Limits(max_code_executions=2), sandbox=sandbox)
    assert sandbox.executed == ["print(1)", "print(1)"]
    assert trial.status == "limit_reached" and trial.limit == "max_code_executions"
    assert len(trial.code_cells) == 2
    assert "that was the last of 2 code executions" in fake_openai.requests[2].tool_results[-1]


def test_rate_limit_is_waited_out(run_env: Path, fake_openai) -> None:
    fake_openai.push(Error(429, "slow down", headers={"Retry-After": "1"}))
    fake_openai.policy = solving_policy()
    _, [trial] = run_one(run_env, fake_openai.url)
    assert trial.status == "submitted" and trial.passed, trial.error
    assert len(fake_openai.requests) == 4  # the 429, then three calls


def test_server_errors_end_the_trial_and_the_run_goes_on(run_env: Path, fake_openai) -> None:
    fake_openai.push(*[Error(500, "boom")] * 3)  # 1 try + 2 retries for the first trial
    fake_openai.policy = solving_policy()
    store, trials = run_one(run_env, fake_openai.url, replicates=2)
    by_rep = {t.spec.replicate: t for t in trials}
    assert by_rep[0].status == "error" and "500" in (by_rep[0].error or "")
    assert by_rep[1].status == "submitted" and by_rep[1].passed
    assert store.manifest().status == "finished"


def test_malformed_tool_arguments_are_reported_back(run_env: Path, fake_openai) -> None:
    fake_openai.push(Reply(tool_calls=[Call("execute_python", raw='{"code": "print(1)')]))
    fake_openai.policy = solving_policy()
    _, [trial] = run_one(run_env, fake_openai.url)
    assert "not valid JSON" in trial.turns[0].feedback
    assert trial.status == "submitted" and trial.passed, trial.error


def test_hanging_model_times_out(scripted_env: Path, fake_openai, monkeypatch) -> None:
    from cellprompt.config import reset_settings

    monkeypatch.setenv("CELLPROMPT_LLM_TIMEOUT_S", "0.5")
    monkeypatch.setenv("CELLPROMPT_LLM_MAX_RETRIES", "1")
    reset_settings()
    fake_openai.push(Hang(4), Hang(4))
    _, [trial] = run_one(scripted_env, fake_openai.url, sandbox=ScriptedSandbox())
    assert trial.status == "error" and "timed out" in (trial.error or "")
    assert trial.wall_s < 15


def test_figures_are_saved_and_shown_to_the_model(run_env: Path, fake_openai) -> None:
    plot = ("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")

    def policy(request: FakeRequest) -> Reply:
        if request.turn == 0:
            return Reply(tool_calls=[Call("execute_python", {"code": plot})])
        return Reply(tool_calls=[Call("submit_answer", {"answer": {"n_cells_high_mito": 0}})])

    fake_openai.policy = policy
    store, [trial] = run_one(run_env, fake_openai.url)
    [execution] = trial.code_cells
    assert len(execution.images) == 1
    png = store.path / execution.images[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fake_openai.requests[1].image_count == 1
    assert trial.status == "submitted" and not trial.passed


def test_anthropic_agent_solves_task(run_env: Path, fake_anthropic) -> None:
    fake_anthropic.policy = solving_policy()
    specs = plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=["anthropic:claude-sonnet-4-5"],
                        sandbox_backend="bwrap", base_url=fake_anthropic.url)
    store = create_run(run_env, specs)
    run(specs, store)
    [trial] = store.trials()
    assert trial.status == "submitted" and trial.passed, trial.error
    assert fake_anthropic.requests[0].system == PROMPT
    assert trial.usage.cost_usd > 0  # priced from the table


def test_missing_api_key_fails_before_any_trial(run_env: Path) -> None:
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY is not set"):
        plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=["openai:gpt-4o"])
    assert not run_env.exists()
