"""Runs in a temporary outputs folder, with datasets shared across the session and fast LLM retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.config import reset_settings
from cellprompt.llm.reference import last_json_object
from cellprompt.tasks import load_task
from tests.conftest import require_sandbox_backend
from tests.fakes.script import FakeRequest, Reply, execute, submit

QUICK_TASK = "pbmc68k-qc-mito"


@pytest.fixture(scope="session")
def shared_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


def _configure(tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    outputs = tmp_path / "outputs"
    for name, value in {
        "CELLPROMPT_DATASETS_DIR": str(shared_datasets),
        "CELLPROMPT_OUTPUTS_DIR": str(outputs),
        "CELLPROMPT_SANDBOX_BACKEND": "bwrap",
        "CELLPROMPT_SANDBOX_MEMORY": "2g",
        "CELLPROMPT_LLM_MAX_RETRIES": "2",
        "CELLPROMPT_LLM_RETRY_BASE_S": "0.01",
        "CELLPROMPT_LLM_RETRY_MAX_WAIT_S": "3",
        "CELLPROMPT_LLM_TIMEOUT_S": "5",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env or cellprompt.toml from the project folder
    reset_settings()
    return outputs


@pytest.fixture
def run_env(tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Environment every runs test uses; yields the outputs folder."""
    require_sandbox_backend("bwrap")
    yield _configure(tmp_path, shared_datasets, monkeypatch)
    reset_settings()


@pytest.fixture
def scripted_env(tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The same, for tests of the conversation that run on `ScriptedSandbox` (no kernel)."""
    yield _configure(tmp_path, shared_datasets, monkeypatch)
    reset_settings()


def reference_cells(task_id: str = QUICK_TASK) -> list[str]:
    task = load_task(task_id)
    assert task.reference is not None
    return task.reference.cells


def last_json(text: str | None) -> dict:
    """What the task's last reference cell printed: the answer the reference model would submit."""
    answer = last_json_object(text or "")
    assert answer is not None, f"no JSON line in {text!r}"
    return answer


def solving_policy(task_id: str = QUICK_TASK):
    """A tool-calling agent that runs the task's reference cells, then submits what they printed."""
    cells = reference_cells(task_id)

    def policy(request: FakeRequest) -> Reply:
        done = sum(1 for r in request.tool_results if r.startswith("[status:"))
        if done < len(cells):
            return Reply(text=f"Step {done + 1}.", tool_calls=[execute(cells[done])])
        return Reply(tool_calls=[submit(last_json(request.last_tool_result))])

    return policy
