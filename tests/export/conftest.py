from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.records.run import ExecutionRecord
from cellprompt.runs.store import RunStore
from tests.export.run_factory import kernel_cells, make_run


@pytest.fixture(scope="session")
def cells() -> dict[str, ExecutionRecord]:
    return kernel_cells()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, cells: dict[str, ExecutionRecord]) -> RunStore:
    return make_run(tmp_path_factory.mktemp("outputs"), cells)


@pytest.fixture()
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"
