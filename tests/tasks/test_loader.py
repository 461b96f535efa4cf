"""Loading YAML task files, scBench eval JSON and built-in ids; schema errors name file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cellprompt.errors import TaskError
from cellprompt.tasks import builtin_tasks, load_task, load_tasks

GOOD = {
    "id": "my-task",
    "title": "Count cells",
    "dataset": "builtin:pbmc68k_reduced",
    "objective": "How many cells?",
    "answer": [{"name": "n", "type": "integer"}],
    "withhold": {"obs": ["bulk_labels"]},
    "graders": [{"type": "numeric_tolerance", "config": {"ground_truth": {"n": 700}}},
                {"type": "label_agreement",
                 "config": {"truth_obs": "bulk_labels", "path": "l.csv",
                            "thresholds": {"ari": 0.5}}}],
    "reference": {"cells": ["print('{\"n\": 700}')"]},
    "metadata": {"category": "qc"},
}


def write_yaml(tmp_path: Path, data: object, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_round_trip(tmp_path: Path) -> None:
    task = load_task(str(write_yaml(tmp_path, GOOD)))
    assert task.id == "my-task" and task.withhold.obs == ["bulk_labels"]
    assert task.metadata.category == "qc" and task.limits.max_turns == 20
    assert load_task(str(write_yaml(tmp_path, GOOD, "t.yml")), dataset="x.h5ad").dataset == \
        "x.h5ad"


@pytest.mark.parametrize(("change", "expected"), [
    ({"title": None}, "field 'title'"),
    ({"graders": []}, "field 'graders'"),
    ({"answer": [{"name": "n", "type": "float"}]}, "field 'answer.0.type'"),
    ({"id": "bad id!"}, "field 'id'"),
    ({"surprise": 1}, "field 'surprise'"),
    ({"limits": {"max_turns": "many"}}, "field 'limits.max_turns'"),
])
def test_schema_errors_name_file_and_field(tmp_path: Path, change: dict, expected: str) -> None:
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = write_yaml(tmp_path, data)
    with pytest.raises(TaskError) as info:
        load_task(str(path))
    message = info.value.message
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_missing_required_field_says_required(tmp_path: Path) -> None:
    data = {k: v for k, v in GOOD.items() if k != "objective"}
    with pytest.raises(TaskError, match="field 'objective' is required"):
        load_task(str(write_yaml(tmp_path, data)))


def test_bad_grader_and_unwithheld_truth_are_load_errors(tmp_path: Path) -> None:
    bad = {**GOOD, "graders": [{"type": "telepathy", "config": {}}]}
    with pytest.raises(TaskError, match=r"graders\[0\]: unknown grader type 'telepathy'"):
        load_task(str(write_yaml(tmp_path, bad)))
    sneaky = {**GOOD, "withhold": {}}
    with pytest.raises(TaskError, match=r"graders\[1\].*neither withhold.obs nor the truth recipe"):
        load_task(str(write_yaml(tmp_path, sneaky)))


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(TaskError, match=r"broken.yaml: not valid YAML at line"):
        load_task(str(path))
    with pytest.raises(TaskError, match="does not exist"):
        load_task(str(tmp_path / "nope.yaml"))
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        load_task("nope")


SCBENCH = {
    "id": "pbmc/count cells",
    "task": "Count the cells after QC. <EVAL_ANSWER>{\"n_cells\": int}</EVAL_ANSWER>",
    "data_node": "latch://123.account/pbmc.h5ad",
    "grader": {"type": "numeric_tolerance",
               "config": {"ground_truth": {"n_cells": 1500},
                          "tolerances": {"n_cells": {"type": "relative", "value": 0.05}}}},
    "metadata": {"task": "qc", "kit": "10x", "time_horizon": "small"},
    "notes": "Agents forget to filter doublets.",
}


def test_scbench_eval_json(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(SCBENCH))
    task = load_task(str(path), dataset="builtin:pbmc68k_reduced")
    assert task.id == "pbmc-count-cells" and task.dataset == "builtin:pbmc68k_reduced"
    assert task.objective == SCBENCH["task"] and task.traps == SCBENCH["notes"]
    assert task.graders == [SCBENCH["grader"]]
    assert task.metadata.category == "qc" and task.metadata.source == "scbench"
    assert [(a.name, a.type) for a in task.answer] == [("n_cells", "number")]
    mapped = load_task(str(path), dataset={SCBENCH["data_node"]: "local.h5ad"})
    assert mapped.dataset == "local.h5ad"


def test_scbench_eval_needs_a_dataset_mapping(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(SCBENCH))
    with pytest.raises(TaskError, match="map it to a dataset with --dataset"):
        load_task(str(path))
    path.write_text(json.dumps({k: v for k, v in SCBENCH.items() if k != "grader"}))
    with pytest.raises(TaskError, match="field 'grader' is required"):
        load_task(str(path), dataset="x.h5ad")


def test_builtin_suite_is_complete() -> None:
    tasks = builtin_tasks()
    assert len(tasks) >= 8
    categories = {t.metadata.category for t in tasks}
    assert {"qc", "normalization", "dimensionality_reduction", "clustering", "cell_typing",
            "marker_genes", "differential_expression", "trajectory", "cell_cycle"} <= categories
    for t in tasks:
        assert t.reference is not None and t.traps.strip() and t.objective.strip()
        assert load_task(t.id) == t
    assert {"trajectory-sim-pseudotime", "pbmc68k-qc-mito"} <= {t.id for t in tasks}


def test_truth_recipes_and_variants_are_checked_at_load(tmp_path: Path) -> None:
    unknown = {**GOOD, "truth": {"recipe": "astrology"}}
    with pytest.raises(TaskError, match="unknown truth recipe 'astrology'"):
        load_task(str(write_yaml(tmp_path, unknown)))
    twice = {**GOOD, "variants": [{"name": "a", "expect": "pass", "cells": ["1"]}] * 2}
    with pytest.raises(TaskError, match="distinct names"):
        load_task(str(write_yaml(tmp_path, twice)))


def test_load_tasks_mixes_ids_files_and_folders(tmp_path: Path) -> None:
    write_yaml(tmp_path, GOOD, "a.yaml")
    write_yaml(tmp_path, {**GOOD, "id": "other"}, "b.yaml")
    (tmp_path / "notes.txt").write_text("ignored")
    tasks = load_tasks(["pbmc68k-qc-mito", str(tmp_path)])
    assert [t.id for t in tasks] == ["pbmc68k-qc-mito", "my-task", "other"]
