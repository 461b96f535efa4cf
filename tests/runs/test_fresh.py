"""`run --fresh`: tasks on generated data get a new dataset seed per run, recorded per trial.

Real parts only: a real task file on a `gen:` dataset, the real planner, materialisation
of the sealed agent copy and its truth on disk.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cellprompt.datasets.generate import parse_ref
from cellprompt.runs.plan import plan_trials, spec_task
from cellprompt.tasks import materialise

TASK = {
    "schema_version": 1, "id": "fresh-probe", "title": "count damaged cells",
    "dataset": "gen:celltypes?seed=5&cells=300&genes=300&low_quality=0.1&name=tissue",
    "objective": "Count the damaged cells in /data/tissue.h5ad.",
    "answer": [{"name": "n_low_quality", "type": "integer"}],
    "withhold": {"obs": ["cell_type", "library_size", "low_quality"], "uns": ["truth"]},
    "graders": [{"type": "numeric_tolerance", "config": {
        "truth_path": ["uns", "truth", "damaged"],
        "tolerances": {"n_low_quality": {"type": "absolute", "value": 0}}}}],
    "reference": {"cells": ["print('{\"n_low_quality\": 0}')"]},
}


def _task_file(tmp_path: Path) -> str:
    path = tmp_path / "fresh-probe.yaml"
    path.write_text(yaml.safe_dump(TASK))
    return str(path)


def test_fresh_runs_draw_a_seed_and_record_it(tmp_path: Path) -> None:
    ref = _task_file(tmp_path)
    plain = plan_trials(prompts={"p": "x"}, tasks=[ref], models=["reference"], replicates=2)
    assert all(s.dataset_seed is None for s in plain)
    assert spec_task(plain[0]).dataset == TASK["dataset"]
    runs = [plan_trials(prompts={"p": "x"}, tasks=[ref], models=["reference"], replicates=2,
                        fresh=True) for _ in range(2)]
    seeds = [{s.dataset_seed for s in specs} for specs in runs]
    assert all(len(s) == 1 and None not in s for s in seeds), "one seed per run, in every trial"
    assert seeds[0] != seeds[1]
    task = spec_task(runs[0][0])
    assert parse_ref(task.dataset).seed == runs[0][0].dataset_seed
    assert parse_ref(task.dataset).mount_name == "tissue"
    again = spec_task(runs[0][0].model_copy())  # a replay (resume) sees the same dataset
    assert again.dataset == task.dataset


def test_fresh_seed_changes_the_data_and_the_truth(tmp_path: Path) -> None:
    ref = _task_file(tmp_path)
    specs = plan_trials(prompts={"p": "x"}, tasks=[ref], models=["reference"], fresh=True)
    base = materialise(spec_task(plan_trials(prompts={"p": "x"}, tasks=[ref],
                                             models=["reference"])[0]),
                       datasets_dir=tmp_path / "ds")
    fresh = materialise(spec_task(specs[0]), datasets_dir=tmp_path / "ds")
    assert fresh.agent_dataset != base.agent_dataset
    assert fresh.mount_name == base.mount_name == "tissue.h5ad"
    assert fresh.truth["uns"]["truth"]["markers"] != base.truth["uns"]["truth"]["markers"]
