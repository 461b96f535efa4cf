"""The self-preference warning compares who the models are (name and server), not the protocol
their server speaks (issue 15): a local model behind an OpenAI-compatible URL is not OpenAI's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEAD = "http://127.0.0.1:9/v1"  # the preflight stops each run right after the judge is chosen


def run_open(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k != "COLUMNS" and not k.startswith(("OPENAI_", "ANTHROPIC_", "CELLPROMPT_"))}
    env |= {"CELLPROMPT_OUTPUTS_DIR": str(tmp_path / "outputs"),
            "CELLPROMPT_DATASETS_DIR": str(tmp_path / "datasets"), "OPENAI_API_KEY": "sk-fake"}
    r = subprocess.run([sys.executable, "-m", "cellprompt.cli.main", "run", "-d", "builtin:krumsiek11",
                        *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "cannot connect" in r.stderr and "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_a_local_model_is_not_in_the_judges_family(tmp_path: Path) -> None:
    stderr = run_open(tmp_path, "-m", "openai:my-local-finetune", "--base-url", DEAD,
                      "--judge-model", "openai:gpt-4o", "--judge-base-url", "http://127.0.0.1:8/v1")
    assert "warning" not in stderr, stderr


@pytest.mark.parametrize(("agent", "judge", "expected"), [
    ("openai:my-local-finetune", "openai:my-local-finetune", "is the same model as"),
    ("openai:llama-3.1-8b", "openai:llama-3.1-70b", "same family (llama)"),
])
def test_the_same_model_or_a_named_family_is_still_warned_about(
    tmp_path: Path, agent: str, judge: str, expected: str
) -> None:
    stderr = run_open(tmp_path, "-m", agent, "--base-url", DEAD, "--judge-model", judge,
                      "--judge-base-url", DEAD)
    assert expected in stderr and f"agent model(s) {agent}" in stderr, stderr
