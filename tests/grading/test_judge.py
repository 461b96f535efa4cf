from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from cellprompt.errors import GradingError
from cellprompt.grading.base import GradeResult
from cellprompt.grading.judge import (
    DEFAULT_CRITERIA,
    Rubric,
    judge_trial,
    load_rubric,
    parse_verdict,
    provider_family,
    transcript,
    truncate,
)
from cellprompt.jsonl import TruncatedLineWarning
from cellprompt.llm import make_model
from cellprompt.records.run import ExecutionRecord, RunManifest, TrialRecord, TrialSpec, Turn
from cellprompt.runs.evaluate import evaluate_run
from cellprompt.runs.store import RunStore
from cellprompt.tasks.spec import Task
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Call, Reply

ANSI_TB = ["\x1b[31m---------\x1b[39m", "\x1b[31mZeroDivisionError\x1b[39m: division by zero"]


def verdict(grade: float, names: list[str] | None = None) -> str:
    names = names or list(DEFAULT_CRITERIA)
    return json.dumps(
        {
            "criteria": [{"name": n, "score": 7, "comment": f"{n} ok"} for n in names],
            "grade": grade,
            "comments": f"graded {grade}",
        }
    )


def judge_file(tmp_path: Path, replies: list[str], name: str = "judge.yaml") -> str:
    path = tmp_path / name
    path.write_text(
        yaml.safe_dump(
            {
                "tools": False,
                "when_exhausted": "repeat_last",
                "replies": [{"text": r, "input_tokens": 10, "output_tokens": 5} for r in replies],
            }
        )
    )
    return f"replay:{path}"


def record(trial_id: str = "t1", model: str = "openai:gpt-4o", score: float | None = 1.0) -> TrialRecord:
    spec = TrialSpec(
        trial_id=trial_id,
        prompt_id="p",
        prompt="SECRET-SYSTEM-PROMPT",
        task_id="task",
        task_ref="/nowhere/task.yaml",
        model=model,
    )
    long_code = "x = 1\n" * 2000 + "print('the end')"
    ex = [
        ExecutionRecord(
            code=long_code,
            final_status="ok",
            outputs=[{"type": "stream", "name": "stdout", "text": "A" * 10000 + "TAIL"}],
        ),
        ExecutionRecord(
            code="1/0",
            final_status="error",
            outputs=[
                {
                    "type": "error",
                    "ename": "ZeroDivisionError",
                    "evalue": "division by zero",
                    "traceback": ANSI_TB,
                }
            ],
        ),
    ]
    return TrialRecord(
        trial_id=trial_id,
        spec=spec,
        status="submitted",
        first_message="Count the clusters.",
        turns=[Turn(index=0, assistant_text="I will count.", executions=ex)],
        answer={"n_clusters": 8},
        score=score,
        passed=bool(score),
        grades=[GradeResult(grader="numeric", score=score or 0.0, passed=bool(score), reasoning="8 == 8")],
    )


def test_transcript_truncates_head_and_tail_and_strips_ansi() -> None:
    text = transcript(record())
    assert "x = 1" in text and "print('the end')" in text and "characters omitted" in text
    assert "TAIL" in text and "\x1b[" not in text and "ZeroDivisionError: division by zero" in text
    assert len(text) < 12000
    assert truncate("short", 10) == "short"


def test_judge_sees_everything_and_parses_structured_verdict(tmp_path: Path) -> None:
    model = make_model(judge_file(tmp_path, [verdict(80)]))
    task = Task(
        id="task",
        title="t",
        dataset="builtin:x",
        objective="Count the clusters.",
        graders=[{"type": "numeric"}],
        rubric="Must mention the resolution used.",
    )
    ev = judge_trial(record(), task, model)
    assert ev.ok and ev.grade_mean == 80 and ev.grade_sd == 0.0 and len(ev.samples) == 1
    assert {c.name for c in ev.samples[0].criteria} == set(DEFAULT_CRITERIA)
    assert ev.usage.input_tokens == 10


def test_judge_prompt_contents_and_hidden_system_prompt(tmp_path: Path) -> None:
    seen: list[list] = []

    class Spy:
        spec, provider, supports_tools, supports_images = "spy:judge", "spy", False, False

        def complete(self, messages, **kwargs):
            seen.append([messages, kwargs])
            return make_model(judge_file(tmp_path, [verdict(50)])).complete(messages, **kwargs)

    task = Task(
        id="task",
        title="t",
        dataset="builtin:x",
        objective="Count the clusters.",
        graders=[{"type": "numeric"}],
        rubric="Must mention the resolution used.",
    )
    judge_trial(record(), task, Spy())
    system, user = seen[0][0][0].content, seen[0][0][1].content
    assert "Must mention the resolution used." in system and "overall_skill" in system
    assert "SECRET-SYSTEM-PROMPT" in user and "n_clusters" in user and "numeric: score 1.00" in user
    assert seen[0][1]["response_schema"]["required"] == ["criteria", "grade", "comments"]
    judge_trial(record(), task, Spy(), show_system_prompt=False)
    assert "SECRET-SYSTEM-PROMPT" not in seen[-1][0][1].content


def test_malformed_reply_is_retried_then_accepted(tmp_path: Path) -> None:
    model = make_model(judge_file(tmp_path, ["I think it is great!", "```json\n" + verdict(64) + "\n```"]))
    ev = judge_trial(record(), None, model)
    assert ev.ok and ev.grade_mean == 64 and ev.error is None
    assert ev.usage.input_tokens == 20  # both attempts are paid for


def test_reply_never_json_is_a_failed_judgement_not_minus_one(tmp_path: Path) -> None:
    model = make_model(judge_file(tmp_path, ["not json at all"]))
    ev = judge_trial(record(), None, model)
    assert not ev.ok and ev.grade_mean is None and ev.samples == []
    assert "not JSON" in ev.error and "3 attempts" in ev.error


def test_out_of_range_and_missing_criteria_are_rejected() -> None:
    with pytest.raises(ValueError, match="verdict schema"):
        parse_verdict(verdict(130), list(DEFAULT_CRITERIA))
    with pytest.raises(ValueError, match="misses criteria: clarity"):
        parse_verdict(verdict(50, ["correctness"]), ["correctness", "clarity"])
    assert parse_verdict("Sure! " + verdict(50) + " hope it helps", list(DEFAULT_CRITERIA)).grade == 50


def test_samples_give_mean_and_sd(tmp_path: Path) -> None:
    calls = iter([verdict(60), verdict(80), verdict(100)])

    class Seq:
        spec, provider, supports_tools, supports_images = "seq:judge", "seq", False, False

        def complete(self, messages, **kwargs):
            from cellprompt.llm.base import ChatReply, Message, Usage

            return ChatReply(
                message=Message(role="assistant", content=next(calls)), usage=Usage(cost_usd=0.01)
            )

    ev = judge_trial(record(), None, Seq(), samples=3)
    assert ev.ok and ev.grade_mean == 80 and ev.grade_sd == pytest.approx(20.0)
    assert ev.usage.cost_usd == pytest.approx(0.03)
    with pytest.raises(GradingError):
        judge_trial(record(), None, Seq(), samples=0)


def test_rubric_file(tmp_path: Path) -> None:
    yml = tmp_path / "r.yaml"
    yml.write_text("criteria:\n  rigour: Is it rigorous?\nextra: be strict\n")
    rubric = load_rubric(yml)
    assert rubric.criteria == {"rigour": "Is it rigorous?"} and rubric.extra == "be strict"
    txt = tmp_path / "r.md"
    txt.write_text("Penalise hard-coded answers.")
    assert load_rubric(txt) == Rubric(extra="Penalise hard-coded answers.")
    with pytest.raises(GradingError, match="does not exist"):
        load_rubric(tmp_path / "missing.yaml")
    yml.write_text("criteria: [1, 2]")
    with pytest.raises(GradingError, match="not valid"):
        load_rubric(yml)


def test_provider_family() -> None:
    assert provider_family("openai:gpt-4o") == "openai"
    assert provider_family("anthropic:claude-sonnet-4-5") == "anthropic"
    assert provider_family("openai:llama-3.1-70b") == "llama"
    assert provider_family("reference") is None


def test_evaluate_run_appends_skips_and_warns(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "outputs", RunManifest(run_id="r1"))
    for i in range(3):
        store.append_trial(record(f"t{i}", model="openai:gpt-4o"))
    with store.trials_path.open("a") as fh:  # a crash mid-write
        fh.write('{"trial_id": "t9", "spec": {')
    judge = judge_file(tmp_path, [verdict(70)])

    class OpenAIJudge:  # same family as the agents, played from the replay file
        spec, provider, supports_tools, supports_images = "openai:gpt-4o-mini", "openai", False, False
        inner = make_model(judge)

        def complete(self, messages, **kwargs):
            return self.inner.complete(messages, **kwargs)

    progress: list[tuple[int, int]] = []
    with pytest.warns(TruncatedLineWarning):
        summary = evaluate_run(store, OpenAIJudge(), progress=lambda d, t: progress.append((d, t)))
    assert summary.judged == 3 and summary.failed == 0 and summary.skipped == 0
    assert progress[-1] == (3, 3)
    assert "same provider family (openai)" in summary.warnings[0]
    assert set(store.evaluations()) == {"t0", "t1", "t2"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedLineWarning)
        again = evaluate_run(store, judge)
    assert again.judged == 0 and again.skipped == 3 and again.warnings == []
    assert len(store.evaluations_path.read_text().splitlines()) == 3


def test_failed_judgements_are_retried_on_the_next_run(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "outputs", RunManifest(run_id="r2"))
    store.append_trial(record("t0"))
    first = evaluate_run(store, judge_file(tmp_path, ["garbage"], "bad.yaml"))
    assert first.failed == 1 and not store.evaluations()["t0"].ok
    second = evaluate_run(store, judge_file(tmp_path, [verdict(90)], "good.yaml"))
    assert second.judged == 1 and store.evaluations()["t0"].grade_mean == 90


def test_judge_through_real_openai_client_and_fake_server(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    store = RunStore.create(tmp_path / "outputs", RunManifest(run_id="r3"))
    store.append_trial(record("t0", model="anthropic:claude-x"))
    fake_openai.push(Reply(text="Here is my verdict: great job"), Reply(text=verdict(72)))
    summary = evaluate_run(store, "openai:gpt-4o", base_url=fake_openai.url)
    assert summary.judged == 1 and summary.warnings == []
    ev = store.evaluations()["t0"]
    assert ev.ok and ev.grade_mean == 72 and ev.usage.input_tokens == 200
    first = fake_openai.requests[0].body
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["criteria", "grade", "comments"]
    assert "SECRET-SYSTEM-PROMPT" in json.dumps(first["messages"])
    assert "rejected" in json.dumps(fake_openai.requests[1].body["messages"])


def test_judge_through_real_anthropic_client_and_fake_server(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    store = RunStore.create(tmp_path / "outputs", RunManifest(run_id="r4"))
    store.append_trial(record("t0", model="anthropic:claude-x"))
    fake_anthropic.push(Reply(tool_calls=[Call("respond", json.loads(verdict(55)))]))
    warned: list[str] = []
    summary = evaluate_run(
        store, "anthropic:claude-sonnet-4-5", base_url=fake_anthropic.url, warn=warned.append
    )
    assert summary.judged == 1, store.evaluations()["t0"].error
    assert "same provider family (anthropic)" in warned[0]
    assert store.evaluations()["t0"].grade_mean == 55
    assert fake_anthropic.requests[0].body["tool_choice"] == {"type": "tool", "name": "respond"}


def test_cli_evaluate(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = RunStore.create(tmp_path / "outputs", RunManifest(run_id="r5"))
    store.append_trial(record("t0", model="openai:gpt-4o"))
    store.append_trial(record("t1", model="openai:gpt-4o"))
    judge = judge_file(tmp_path, ["no json here"])
    cmd = [sys.executable, "-m", "cellprompt.cli.main", "evaluate", str(store.path), "--judge-model", judge]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr  # a judge that fails is not a grade (issue 15)
    assert "judged 0, failed 2" in result.stdout and "judgement(s) failed; the first:" in result.stderr
    missing = subprocess.run([*cmd[:4], str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert (
        missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )


def open_record(tmp_path: Path, trial_id: str = "o1") -> TrialRecord:
    """An open-analysis trial with a figure its code showed and one it saved in its workspace."""
    from cellprompt.records.run import TrialSpec as Spec

    png = bytes.fromhex("89504e470d0a1a0a") + b"fake-png"
    (tmp_path / "artifacts" / trial_id / "workspace").mkdir(parents=True)
    (tmp_path / "artifacts" / trial_id / "fig-1.png").write_bytes(png)
    (tmp_path / "artifacts" / trial_id / "workspace" / "umap.png").write_bytes(png)
    spec = Spec(
        trial_id=trial_id,
        prompt_id="p",
        prompt="P",
        task_id="open-x",
        task_ref="/nowhere.yaml",
        model="openai:gpt-4o",
        task_kind="open",
    )
    ex = ExecutionRecord(
        code="plot()", final_status="ok", outputs=[], images=[f"artifacts/{trial_id}/fig-1.png"]
    )
    return TrialRecord(
        trial_id=trial_id,
        spec=spec,
        status="submitted",
        first_message="Analyse it.",
        turns=[Turn(index=0, assistant_text="Plotting.", executions=[ex])],
        answer={"report": "short"},
        report="# Report\nOPEN-FINDING",
        report_source="message",
    )


def test_open_analysis_judge_reads_the_report_sees_figures_and_flags_disagreement(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    grades = iter([30, 85, 80])
    fake_anthropic.policy = lambda request: Reply(text=verdict(next(grades)))
    model = make_model("anthropic:claude-judge", base_url=fake_anthropic.url)
    ev = judge_trial(open_record(tmp_path), None, model, samples=3, run_dir=tmp_path)
    assert ev.ok and [s.grade for s in ev.samples] == [30, 85, 80]
    assert ev.grade_range == 55 and ev.disagreement and ev.figures_shown == 2
    request = fake_anthropic.requests[0]
    assert request.image_count == 2  # the saved figure and the displayed one, no more
    assert (
        "## Final report (from message)" in request.user_texts[0] and "OPEN-FINDING" in request.user_texts[0]
    )
    assert "Submitted answer" not in request.user_texts[0] and "open analysis" in request.system
    calm = iter([70, 75])
    fake_anthropic.policy = lambda request: Reply(text=verdict(next(calm)))
    assert not judge_trial(open_record(tmp_path, "o2"), None, model, samples=2, run_dir=tmp_path).disagreement


def test_sealed_trials_show_no_figures_unless_asked(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    rec = open_record(tmp_path)
    rec.spec.task_kind = "sealed"
    fake_anthropic.policy = lambda request: Reply(text=verdict(50))
    model = make_model("anthropic:claude-judge", base_url=fake_anthropic.url)
    assert judge_trial(rec, None, model, run_dir=tmp_path).figures_shown == 0
    assert judge_trial(rec, None, model, run_dir=tmp_path, include_figures=True).figures_shown == 2


def test_default_judge_is_from_another_family() -> None:
    from cellprompt.grading.judge import default_judge, same_family

    assert default_judge(["openai:gpt-4o"]).startswith("anthropic:")
    assert default_judge(["anthropic:claude-sonnet-4-5"]).startswith("openai:")
    assert default_judge(["reference"]).startswith("anthropic:")
    assert same_family("openai:gpt-4o", ["openai:gpt-4o-mini", "anthropic:claude-x", "reference"]) == [
        "openai:gpt-4o-mini"
    ]
