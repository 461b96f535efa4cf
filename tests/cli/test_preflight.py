"""Preflight: a run whose model, server, key, task or dataset cannot work stops before its first
trial, within seconds, in one line that names what to fix (issue 15).

The real `openai`/`anthropic` SDKs talk to the fake servers of tests/fakes over loopback; the CLI
runs in a subprocess with no terminal, as a script would meet it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.subprocess_cli import TASK, cli
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


def task_file(tmp_path: Path, dataset: str) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(TASK.format(dataset=dataset))
    return str(path)


def one_line_failure(r: subprocess.CompletedProcess[str], cwd: Path, *expected: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert all(text in r.stderr for text in expected), r.stderr
    assert not (cwd / "outputs").exists()  # no run was made, no trial ran


def test_an_unknown_model_stops_the_run_naming_what_the_server_serves(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.models = ["gpt-4o", "llama3"]
    started = time.monotonic()
    r = cli(["run", "-t", task_file(tmp_path, "builtin:krumsiek11"), "-m", "openai:nosuch",
             "--base-url", fake_openai.url], tmp_path)
    one_line_failure(r, tmp_path, "model 'nosuch' not found", "it serves: gpt-4o, llama3", "--model")
    assert time.monotonic() - started < 20
    # not in the list: one single-token completion confirmed it before refusing; no trial ran
    assert [(q.body["model"], q.body["max_tokens"]) for q in fake_openai.requests] == [("nosuch", 1)]


def test_a_server_that_does_not_answer_names_the_flag(tmp_path: Path) -> None:
    started = time.monotonic()
    r = cli(["run", "-t", task_file(tmp_path, "builtin:krumsiek11"), "-m", "openai:gpt-4o",
             "--base-url", "http://127.0.0.1:9/v1"], tmp_path)
    one_line_failure(r, tmp_path, "cannot connect to http://127.0.0.1:9/v1", "check --base-url")
    assert time.monotonic() - started < 20


def test_an_anthropic_model_is_asked_through_its_own_sdk(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.models = ["claude-sonnet-4-5"]
    task = task_file(tmp_path, "builtin:krumsiek11")
    r = cli(["run", "-t", task, "-m", "anthropic:claude-nosuch"], tmp_path,
            ANTHROPIC_BASE_URL=fake_anthropic.url, ANTHROPIC_API_KEY="sk-ant-fake")
    one_line_failure(r, tmp_path, "model 'claude-nosuch' not found", "fix --model")
    r = cli(["run", "-t", task, "-m", "anthropic:claude-sonnet-4-5"], tmp_path,
            ANTHROPIC_BASE_URL=fake_anthropic.url)  # no key
    one_line_failure(r, tmp_path, "ANTHROPIC_API_KEY is not set", "cellprompt configure")


@pytest.mark.parametrize(("content", "expected"), [
    (None, "does not exist"),
    (b"not hdf5 at all", "is not an .h5ad (HDF5) file"),
])
def test_a_missing_or_corrupt_dataset_stops_the_run(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    data = tmp_path / "cells.h5ad"
    if content is not None:
        data.write_bytes(content)
    r = cli(["run", "-t", task_file(tmp_path, str(data)), "-m", "reference"], tmp_path)
    one_line_failure(r, tmp_path, str(data), expected)


def test_the_judge_is_checked_before_an_open_analysis_runs(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.models = ["judge-a"]
    r = cli(["run", "-d", "builtin:krumsiek11", "-m", "reference", "--judge-model", "openai:judge-b",
             "--judge-base-url", fake_openai.url], tmp_path)
    one_line_failure(r, tmp_path, "model 'judge-b' not found", "fix --judge-model")


def test_a_name_the_server_does_not_list_is_tried_with_one_token(fake_openai: FakeOpenAI) -> None:
    """Some servers (llama.cpp) list one name and answer to any: one completion decides."""
    from cellprompt.config import Settings
    from cellprompt.errors import ModelError
    from cellprompt.llm.preflight import check_model

    settings = Settings(openai_base_url=None, llm_cache_dir=None)
    fake_openai.models = ["served"]
    check_model("openai:served", base_url=fake_openai.url, settings=settings)
    assert not fake_openai.requests  # the models endpoint vouched: no tokens spent
    with pytest.raises(ModelError, match=r"model .other. not found at .*it serves: served"):
        check_model("openai:other", base_url=fake_openai.url, settings=settings)
    (asked,) = fake_openai.requests
    assert asked.body["model"] == "other" and asked.body["max_tokens"] == 1


def test_evaluate_checks_its_judge_before_judging(tmp_path: Path) -> None:
    from cellprompt.records.run import RunManifest, TrialRecord, TrialSpec
    from cellprompt.runs.store import RunStore

    store = RunStore.create(tmp_path / "runs", RunManifest(run_id="r1"))
    spec = TrialSpec(trial_id="t0", prompt_id="p", prompt="P", task_id="t", task_ref="t",
                     model="openai:gpt-4o")
    store.append_trial(TrialRecord(trial_id="t0", spec=spec, status="submitted"))
    started = time.monotonic()
    r = cli(["evaluate", str(store.path), "--judge-model", "openai:judge",
             "--base-url", "http://127.0.0.1:9/v1"], tmp_path)
    one_line_failure(r, tmp_path, "cannot connect to http://127.0.0.1:9/v1", "check --base-url")
    assert time.monotonic() - started < 20 and not store.evaluations()
