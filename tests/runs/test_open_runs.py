"""Open analyses end to end: `cellprompt run --dataset` with the real openai/anthropic SDKs talking
to the fake servers, the real bwrap sandbox, the judge (several samples, figures), notebooks and
the report ranked by judge grade; and the one-line errors of the command without a terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cellprompt.runs.store import RunStore
from tests.fakes.script import FakeRequest, Reply, execute

GOOD, PLAIN = "GOOD-PROMPT: plot, then report.", "PLAIN-PROMPT: be brief."
ANALYSIS = """import anndata as ad, matplotlib.pyplot as plt
a = ad.read_h5ad("/data/pbmc68k_reduced.h5ad")
plt.hist(a.obs["n_genes"], bins=20); plt.title("genes per cell")
plt.savefig("genes_hist.png", dpi=60); plt.show()
open("report.md", "w").write("# Report\\nMEDIAN-FINDING: genes per cell are unimodal.\\n")
print("cells", a.n_obs)"""
CRITERIA = ["correctness", "efficiency", "interpretation", "planning", "clarity", "overall_skill"]


def agent(request: FakeRequest) -> Reply:
    """Runs one cell; the GOOD prompt then ends with a summary, the plain one submits a report."""
    if request.turn == 0:
        return Reply(text="Plan: QC histogram.", tool_calls=[execute(ANALYSIS)])
    if "GOOD-PROMPT" in request.system:
        return Reply(text="Summary: genes per cell look unimodal (see genes_hist.png).")
    return Reply(text="Done, nothing else to add.")


def verdict(grade: float) -> str:
    return json.dumps(
        {
            "criteria": [{"name": n, "score": grade / 10, "comment": f"{n}: fine"} for n in CRITERIA],
            "grade": grade,
            "comments": f"grade {grade}",
        }
    )


def judge(counter: dict[str, int]):
    """Grades GOOD trials 80 and plain ones 40; on plain trials every third sample says 90."""

    def policy(request: FakeRequest) -> Reply:
        text = request.user_texts[0]
        if "GOOD-PROMPT" in text:
            return Reply(text=verdict(80))
        counter["plain"] = counter.get("plain", 0) + 1
        return Reply(text=verdict(90 if counter["plain"] % 3 == 0 else 40))

    return policy


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellprompt.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def env(run_env: Path, fake_anthropic) -> dict[str, str]:
    values = dict(os.environ)
    values["ANTHROPIC_BASE_URL"] = fake_anthropic.url
    return values


@pytest.mark.slow
def test_open_analysis_is_run_judged_ranked_and_exported(
    run_env: Path, env: dict[str, str], fake_openai, fake_anthropic
) -> None:
    fake_openai.policy = agent
    fake_anthropic.policy = judge({})
    cwd = run_env.parent
    (cwd / "prompts").mkdir()
    (cwd / "prompts" / "good.txt").write_text(GOOD)
    (cwd / "prompts" / "plain.txt").write_text(PLAIN)
    result = cli(
        "run",
        "--prompt",
        "prompts",
        "--dataset",
        "builtin:pbmc68k_reduced",
        "--model",
        "openai:fake-agent",
        "--base-url",
        fake_openai.url,
        "--replicates",
        "2",
        "--parallel",
        "2",
        "--judge-samples",
        "3",
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    store = RunStore.open(next(run_env.iterdir()))
    trials = store.trials()
    assert len(trials) == 4 and all(t.status == "submitted" for t in trials), [t.error for t in trials]
    good = [t for t in trials if t.spec.prompt_id == "good"]
    assert all(
        t.report_source == "workspace:report.md" and "MEDIAN-FINDING" in (t.report or "") for t in good
    )
    assert all(t.score is None and not t.grades for t in trials)  # open: no graders, no fake 0
    # the agent was told where the report goes and how to finish
    first = fake_openai.requests[0].user_texts[0]
    assert "/workspace/report.md" in first and "/data/pbmc68k_reduced.h5ad" in first
    # the default judge is from another family than the openai agent: the fake anthropic server
    evaluations = store.evaluations()
    assert len(evaluations) == 4 and all(e.ok and len(e.samples) == 3 for e in evaluations.values())
    assert {e.judge_model for e in evaluations.values()} == {"anthropic:claude-sonnet-4-5"}
    assert all(e.figures_shown >= 1 for e in evaluations.values())
    judge_requests = [r for r in fake_anthropic.requests if "## Conversation" in r.user_texts[0]]
    assert len(judge_requests) == 12 and all(r.image_count >= 1 for r in judge_requests)
    assert all("## Final report" in r.user_texts[0] for r in judge_requests)
    assert "MEDIAN-FINDING" in next(
        r.user_texts[0] for r in judge_requests if "GOOD-PROMPT" in r.user_texts[0]
    )
    assert (
        all(c in judge_requests[0].system for c in CRITERIA) and "open analysis" in judge_requests[0].system
    )
    plain = [evaluations[t.trial_id] for t in trials if t.spec.prompt_id == "plain"]
    assert any(e.disagreement for e in plain)  # 40, 40, 90: the judge disagrees with itself
    assert not any(evaluations[t.trial_id].disagreement for t in good)
    # console: the ranking puts the good prompt first; the report says so too
    assert re.search(r"1\s*│\s*good", result.stdout) and "report.html" in result.stdout
    html = (store.path / "report.html").read_text()
    ranking = html[html.index('id="judge-ranking"') :]
    assert ranking.index("<td>good</td>") < ranking.index("<td>plain</td>")
    assert "judge disagrees on" in ranking and "Leaderboard</h2>" not in html
    # notebooks end with the written report
    nb_result = cli("notebook", store.run_id, env=env, cwd=cwd)
    assert nb_result.returncode == 0, nb_result.stderr
    nb = nbformat.read(store.path / "notebooks" / f"{good[0].trial_id}.ipynb", as_version=4)
    assert "MEDIAN-FINDING" in nb.cells[-1].source and "Final report" in nb.cells[-1].source
    # resume has nothing left to run or judge, and says so without re-judging
    before = len(fake_anthropic.requests)
    again = cli("run", "--resume", store.run_id, env=env, cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert len(fake_anthropic.requests) == before


@pytest.mark.slow
def test_reference_model_plays_an_open_task_file_offline(run_env: Path, env: dict[str, str]) -> None:
    cwd = run_env.parent
    made = cli(
        "tasks", "new", "--open", "--dataset", "builtin:pbmc68k_reduced", "-o", "open.yaml", env=env, cwd=cwd
    )
    assert made.returncode == 0, made.stderr
    (cwd / "p.txt").write_text("You analyse single-cell data.")
    result = cli(
        "run",
        "--prompt",
        "p.txt",
        "--task",
        "open.yaml",
        "--model",
        "reference",
        "--no-judge",
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    (trial,) = RunStore.open(next(run_env.iterdir())).trials()
    assert trial.status == "submitted" and trial.spec.task_kind == "open"
    assert trial.report_source == "workspace:report.md" and "## Clusters" in (trial.report or "")
    assert "not judged" in result.stderr and "cellprompt evaluate" in result.stderr


def test_without_a_terminal_missing_arguments_are_one_line_errors(run_env: Path, env: dict[str, str]) -> None:
    cwd = run_env.parent
    (cwd / "p.txt").write_text("x")
    cases = [
        ((), "missing --dataset (or --task)"),  # the prompt defaults to baseline
        (("--prompt", "p.txt"), "missing --dataset (or --task)"),
        (
            ("--prompt", "p.txt", "--dataset", "builtin:nope", "--model", "reference"),
            "builtin dataset 'nope'",
        ),
        (("--prompt", "p.txt", "--task", "x.yaml", "--dataset", "builtin:krumsiek11"), "not both"),
        (
            (
                "--prompt",
                "p.txt",
                "--dataset",
                "builtin:krumsiek11",
                "--model",
                "openai:gpt-4o",
                "--judge-model",
                "openai:gpt-4o",
            ),
            "OPENAI_API_KEY",
        ),
    ]
    for args, expected in cases:
        result = cli("run", *args, env=env, cwd=cwd, timeout=60)
        assert result.returncode != 0 and expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(run_env.glob("*")) if run_env.exists() else True  # nothing half-made is left


def test_task_schema_open_kind(tmp_path: Path) -> None:
    from cellprompt.errors import TaskError
    from cellprompt.tasks import load_task

    base = "id: t\ntitle: t\ndataset: builtin:krumsiek11\nobjective: analyse\n"
    cases = {
        "sealed.yaml": (base, "a sealed task needs at least one grader"),
        "open-graded.yaml": (
            base + "kind: open\ngraders: [{type: multiple_choice, config: {correct_answer: A}}]\n",
            "graded by the LLM judge only",
        ),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(TaskError, match=re.escape(expected)):
            load_task(str(tmp_path / name))
    (tmp_path / "open.yaml").write_text(base + "kind: open\nrubric: cite markers\n")
    task = load_task(str(tmp_path / "open.yaml"))
    assert task.kind == "open" and task.graders == [] and task.rubric == "cite markers"


@pytest.mark.slow
def test_on_a_terminal_run_asks_for_prompt_dataset_and_code_limit(run_env: Path, env: dict[str, str]) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = {k: v for k, v in env.items() if k != "ANTHROPIC_API_KEY"}  # the default judge has no key
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cellprompt.cli.main", "run"],
        cwd=str(run_env.parent),
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 200),
    )
    child.expect(r"Prompt source")
    child.sendline("paste")
    child.expect("END")
    child.sendline("You are a careful analyst.")
    child.sendline("")
    child.sendline("Keep this blank line above.")
    child.sendline("END")
    child.expect(r"builtin:krumsiek11")
    child.expect(r"Dataset")
    child.sendline("builtin:krumsiek11")
    child.expect(r"Model")
    child.sendline("")  # the offline default: reference
    child.expect(r"Maximum code executions")
    child.sendline("5")
    child.expect(pexpect.EOF, timeout=300)
    child.close()
    assert child.exitstatus == 0, child.before
    store = RunStore.open(next(run_env.iterdir()))
    (trial,) = store.trials()
    assert trial.spec.prompt == "You are a careful analyst.\n\nKeep this blank line above."
    assert trial.spec.limits.max_code_executions == 5 and trial.spec.model == "reference"
    assert trial.status == "submitted" and trial.report and "krumsiek11" in trial.spec.task_id
    assert store.manifest().config["judge"] is None  # no key for the default judge: said, not crashed
