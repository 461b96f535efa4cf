"""MCP tests: the real bwrap sandbox, the real SDK over real stdio and loopback HTTP."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.config import reset_settings
from cellprompt.tasks import load_task
from tests.conftest import require_sandbox_backend

pytest.importorskip("mcp.server.lowlevel")

AGENT = Path(__file__).with_name("scripted_agent.py")
QUICK_TASK = "pbmc68k-qc-mito"
OTHER_TASK = "pbmc68k-pca-variance"
PROMPT = "You are a careful single-cell analyst. SYSTEM-PROMPT-MARKER"


@pytest.fixture(scope="session")
def shared_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-datasets")


@pytest.fixture
def mcp_env(tmp_path: Path, shared_datasets: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Settings for in-process calls and the environment for subprocesses (same values)."""
    require_sandbox_backend("bwrap")
    values = {
        "CELLPROMPT_DATASETS_DIR": str(shared_datasets),
        "CELLPROMPT_OUTPUTS_DIR": str(tmp_path / "outputs"),
        "CELLPROMPT_SANDBOX_BACKEND": "bwrap",
        "CELLPROMPT_SANDBOX_MEMORY": "2g",
        "COLUMNS": "200",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield {**os.environ, **values}
    reset_settings()


def write_plan(folder: Path, tasks: list[str], mode: str = "solve") -> tuple[Path, Path]:
    """The scripted agent's plan (the reference cells of each task) and the log it appends to."""
    log = folder / f"agent-log-{mode}.jsonl"
    entries = []
    for ref in tasks:
        task = load_task(ref)
        assert task.reference is not None
        entries.append({"marker": task.objective.strip()[:60], "cells": task.reference.cells})
    plan = folder / f"plan-{mode}.json"
    plan.write_text(json.dumps({"log": str(log), "mode": mode, "tasks": entries}))
    return plan, log


def agent_model(plan: Path, *, stdio: bool = False) -> str:
    config = "{mcp_stdio_config} --stdio" if stdio else "{mcp_config}"
    return f"agent:{sys.executable} {AGENT} {plan} {config}"


def read_log(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
