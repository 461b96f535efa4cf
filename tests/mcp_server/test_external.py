"""`--model agent:"COMMAND"`: a scripted external agent (a real SDK client) plays whole runs."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

from cellprompt.agent.tools import coerce_answer
from cellprompt.errors import ModelError
from cellprompt.llm import make_model
from cellprompt.records.run import Limits
from cellprompt.runs.runner import create_run, plan_trials, run
from cellprompt.runs.store import RunStore
from tests.mcp_server.conftest import OTHER_TASK, PROMPT, QUICK_TASK, agent_model, read_log, write_plan


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cellprompt.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_run_cli_with_an_external_agent_on_two_tasks_with_replicates(mcp_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    plan, log = write_plan(tmp_path, [QUICK_TASK, OTHER_TASK])
    prompt_file = tmp_path / "careful.txt"
    prompt_file.write_text(PROMPT)
    r = cli(mcp_env, "run", "-p", str(prompt_file), "-t", QUICK_TASK, "-t", OTHER_TASK,
            "-m", agent_model(plan), "-n", "2", "-j", "2")
    assert r.returncode == 0, r.stderr
    [folder] = Path(mcp_env["CELLPROMPT_OUTPUTS_DIR"]).iterdir()
    records = RunStore(folder).trials()
    assert len(records) == 4 and {(t.spec.task_id, t.spec.replicate) for t in records} == {
        (task, rep) for task in (QUICK_TASK, OTHER_TASK) for rep in (0, 1)}
    malformed = f"error: {coerce_answer('not a json object')[1]}"
    for record in records:
        assert record.status == "submitted" and record.passed and record.score == 1.0, record.error
        calls = [c.name for t in record.turns for c in t.tool_calls]
        assert calls[0] == "execute_python" and calls[-3:] == ["list_files", "submit_answer", "submit_answer"]
        assert record.code_cells[0].final_status == "error"  # fail, then fix
        assert all(e.final_status == "ok" for e in record.code_cells[1:])
        submits = [t for t in record.turns if t.tool_calls and t.tool_calls[0].name == "submit_answer"]
        assert submits[0].feedback == malformed
        assert record.turns[-1].assistant_text.startswith("submitted {")  # the agent's last words
        assert record.usage.cost_unknown
    events = read_log(log)
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 4 and all(e["prompt"] == PROMPT for e in starts)  # the prompt under test
    assert all(e["text"] == malformed for e in events if e["event"] == "malformed")
    assert all("trial is over" in e["text"] for e in events if e["event"] == "after")
    report = cli(mcp_env, "report", str(folder), "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    notebooks = cli(mcp_env, "notebook", str(folder))
    assert notebooks.returncode == 0 and len(list((folder / "notebooks").glob("*.ipynb"))) == 4


def test_agent_that_launches_the_server_over_stdio(mcp_env: dict[str, str], tmp_path: Path) -> None:
    plan, _ = write_plan(tmp_path, [QUICK_TASK])
    specs = plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=[agent_model(plan, stdio=True)],
                        sandbox_backend="bwrap")
    store = create_run(tmp_path / "out", specs)
    run(specs, store, provider=None)
    [record] = store.trials()
    assert record.status == "submitted" and record.passed, record.error


def test_limits_are_enforced_and_recorded(mcp_env: dict[str, str], tmp_path: Path) -> None:
    loop_plan, loop_log = write_plan(tmp_path, [QUICK_TASK], mode="loop")
    hang_plan, hang_log = write_plan(tmp_path, [QUICK_TASK], mode="hang")
    leave_plan, _ = write_plan(tmp_path, [QUICK_TASK], mode="leave")
    specs = [
        *plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=[agent_model(loop_plan)],
                     limits=Limits(max_code_executions=2), sandbox_backend="bwrap"),
        *plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=[agent_model(hang_plan)],
                     limits=Limits(wall_time_s=6), sandbox_backend="bwrap"),
        *plan_trials(prompts={"p": PROMPT}, tasks=[QUICK_TASK], models=[agent_model(leave_plan)],
                     sandbox_backend="bwrap"),
    ]
    store = create_run(tmp_path / "out", specs)
    t0 = time.monotonic()
    run(specs, store, parallel=3)
    assert time.monotonic() - t0 < 90  # the hanging agent did not hold the run
    by_model = {r.spec.model: r for r in store.trials()}
    looped, hung, left = (by_model[agent_model(p)] for p in (loop_plan, hang_plan, leave_plan))

    assert looped.status == "limit_reached" and looped.limit == "max_code_executions"
    assert len(looped.code_cells) == 2 and not looped.passed and looped.score == 0.0
    texts = [e["text"] for e in read_log(loop_log) if e["event"] == "execute"]
    assert "that was the last of 2 code executions" in texts[1]
    assert "code executions is reached" in texts[2]

    assert hung.status == "limit_reached" and hung.limit == "wall_time" and not hung.passed
    assert hung.wall_s < 60
    [start] = [e for e in read_log(hang_log) if e["event"] == "start"]
    with suppress(psutil.NoSuchProcess):  # the agent was killed with the trial (an unreaped zombie is gone)
        assert psutil.Process(start["pid"]).status() == psutil.STATUS_ZOMBIE

    assert left.status == "error" and "exited with code 0 without submitting" in (left.error or "")
    assert left.grades and not left.passed


def test_agent_spec_errors_are_one_line(mcp_env: dict[str, str]) -> None:
    with pytest.raises(ModelError, match="not found on PATH"):
        make_model("agent:no-such-agent-program --flag")
    with pytest.raises(ModelError, match="needs a command"):
        make_model("agent:")
    with pytest.raises(ModelError, match="external agent, not a chat model"):
        make_model(f"agent:{sys.executable}").complete([])
    r = cli(mcp_env, "run", "-p", "x", "-t", QUICK_TASK, "-m", "agent:no-such-agent-program")
    assert r.returncode != 0 and "not found on PATH" in r.stderr and "Traceback" not in r.stderr
    r = cli(mcp_env, "mcp", "serve", "--task", "no-such-task")
    assert r.returncode != 0 and "no-such-task" in r.stderr and "Traceback" not in r.stderr
