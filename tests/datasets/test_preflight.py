"""A trial whose dataset (or task) cannot fit the sandbox's memory is refused before a sandbox opens."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from cellprompt.config import reset_settings
from cellprompt.records.run import TrialSpec
from cellprompt.runs.trial import execute_trial


def _task_file(folder: Path, dataset: Path, memory: str | None = None) -> Path:
    task = {"id": "fit", "title": "fit", "dataset": str(dataset), "objective": "Count cells.",
            "answer": [{"name": "n", "type": "integer"}],
            "withhold": {"obs": ["cell_type"]},
            "graders": [{"type": "numeric_tolerance", "config": {"ground_truth": {"n": 1}}}]}
    if memory:
        task["limits"] = {"memory": memory}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A 120 MB dense matrix: with the kernel's baseline, more than a 600 MB sandbox holds."""
    n, g = 15_000, 2_000
    path = tmp_path / "dense.h5ad"
    ad.AnnData(X=np.ones((n, g), dtype=np.float32),
               obs=pd.DataFrame({"cell_type": pd.Categorical(["T", "B"] * (n // 2))},
                                index=[f"c{i}" for i in range(n)])).write_h5ad(path)
    return path


def _run(task: Path, tmp_path: Path) -> tuple[object, list[object]]:
    opened: list[object] = []

    def provider(backend: str, mounts: list) -> object:
        opened.append(mounts)
        raise AssertionError("a sandbox was opened for a trial that cannot fit")

    spec = TrialSpec(trial_id="t1", prompt_id="p", prompt="be brief", task_id="fit",
                     task_ref=str(task), model="reference")
    return execute_trial(spec, tmp_path / "run", provider=provider), opened


@pytest.mark.parametrize(("memory", "declared", "expected"), [
    ("600m", None, r"dataset dense\.h5ad needs at least 71\d\.\d MB .* limit is 600\.0 MB"),
    ("4g", "64g", r"the task needs 64\.0 GB of memory \(its limits\.memory\) .* 4\.0 GB"),
])
def test_refused_before_the_sandbox(dataset: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, memory: str,
                                    declared: str | None, expected: str) -> None:
    monkeypatch.setenv("CELLPROMPT_SANDBOX_MEMORY", memory)
    monkeypatch.setenv("CELLPROMPT_DATASETS_DIR", str(tmp_path / "datasets"))
    reset_settings()
    try:
        record, opened = _run(_task_file(tmp_path, dataset, declared), tmp_path)
    finally:
        reset_settings()
    assert opened == []
    assert record.status == "error" and "CELLPROMPT_SANDBOX_MEMORY=" in record.error
    assert re.search(expected, record.error), record.error
    assert "\n" not in record.error
