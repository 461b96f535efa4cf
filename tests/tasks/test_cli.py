"""`cellprompt tasks list|show|validate|grade`, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "CELLPROMPT_DATASETS_DIR": str(env_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cellprompt.cli.main", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_list_json(datasets_dir: Path) -> None:
    r = cli("tasks", "list", "--json", env_dir=datasets_dir)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 8 and {"id", "title", "category", "dataset"} <= set(rows[0])


def test_show_and_unknown_task(datasets_dir: Path) -> None:
    r = cli("tasks", "show", "cellcycle-sim-phases", env_dir=datasets_dir)
    assert r.returncode == 0 and "objective: |" in r.stdout and "traps:" in r.stdout
    r = cli("tasks", "show", "nope", env_dir=datasets_dir)
    assert r.returncode == 1 and "unknown task 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


def test_grade_json_and_file(datasets_dir: Path, tmp_path: Path) -> None:
    answer = {"n_cells_high_mito": 0, "median_total_counts": 3333.5}  # the percent trap
    r = cli("tasks", "grade", "pbmc68k-qc-mito", "--answer", json.dumps(answer), "--json",
            env_dir=datasets_dir)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["passed"] is False
    assert out["grades"][0]["field_scores"]["n_cells_high_mito"] == 0.0
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "phases.csv").write_text("cell_id,phase\n")
    file = tmp_path / "answer.json"
    file.write_text(json.dumps({"n_S": 182, "n_G2M": 17}))
    r = cli("tasks", "grade", "cellcycle-sim-phases", "--answer", str(file), "--workspace",
            str(ws), env_dir=datasets_dir)
    assert r.returncode == 0 and "label_agreement" in r.stdout and "header but no rows" in r.stdout


@pytest.mark.parametrize("args", [["tasks", "grade", "pbmc68k-qc-mito", "--answer", "{oops"],
                                  ["tasks", "validate"]])
def test_usage_errors_are_one_line(datasets_dir: Path, args: list[str]) -> None:
    r = cli(*args, env_dir=datasets_dir)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr


def test_validate_prints_a_variant_table_and_fails_on_an_off_variant(datasets_dir: Path,
                                                                     tmp_path: Path) -> None:
    import yaml

    from tests.conftest import require_sandbox_backend

    require_sandbox_backend("bwrap")
    task = yaml.safe_load((Path(__file__).parents[2] / "src/cellprompt/tasks/builtin/"
                           "pbmc68k-qc-mito.yaml").read_text())
    task["id"] = "qc-lax"
    task["graders"][0]["config"]["tolerances"]["n_cells_high_mito"]["value"] = 1000
    task["variants"] = [v for v in task["variants"] if v["name"] in
                        ("percent-scale", "trap-percent-threshold")]
    path = tmp_path / "qc-lax.yaml"
    path.write_text(yaml.safe_dump(task))
    r = cli("tasks", "validate", str(path), "--backend", "bwrap", "--no-probes",
            env_dir=datasets_dir)
    assert r.returncode == 1, r.stderr
    for word in ("reference", "percent-scale", "trap-percent-threshold", "null", "expected"):
        assert word in r.stdout
    assert "1 off" in r.stdout and "broken: qc-lax" in r.stdout


def test_list_shows_custom_tasks_from_tasks_dir(datasets_dir: Path, tmp_path: Path) -> None:
    import os

    import yaml

    folder = tmp_path / "mine"
    folder.mkdir()
    task = yaml.safe_load((Path(__file__).parents[2] / "src/cellprompt/tasks/builtin/"
                           "gen-norm-size-fold.yaml").read_text())
    task["id"] = "my-own-task"
    (folder / "my-own-task.yaml").write_text(yaml.safe_dump(task))
    r = cli("tasks", "list", "--json", "--tasks-dir", str(folder), env_dir=datasets_dir)
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    assert rows["my-own-task"]["origin"] == str(folder)
    assert rows["gen-norm-size-fold"]["origin"] == "builtin"
    (tmp_path / "tasks").symlink_to(folder)  # ./tasks is read without the flag
    env = {**os.environ, "CELLPROMPT_DATASETS_DIR": str(datasets_dir), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "cellprompt.cli.main", "tasks", "list", "--json"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "my-own-task" in r.stdout, r.stderr
    r = cli("tasks", "list", "--tasks-dir", str(tmp_path / "nope"), env_dir=datasets_dir)
    assert r.returncode == 2 and "--tasks-dir" in r.stderr and "Traceback" not in r.stderr


def test_tasks_new_writes_a_sealed_scaffold_with_every_slot(datasets_dir: Path, tmp_path: Path) -> None:
    from cellprompt.tasks import load_task

    target = tmp_path / "tasks" / "my-task.yaml"
    r = cli("tasks", "new", "my-task", "-o", str(target), env_dir=datasets_dir)
    assert r.returncode == 0, r.stderr
    task = load_task(str(target))
    assert task.id == "my-task" and task.kind == "sealed"
    assert task.reference is not None and task.graders and task.answer and task.traps
    assert task.withhold.obs and task.metadata.category != "other"
    assert {v.expect for v in task.variants} == {"pass", "fail"}  # the validity kit's slots
    again = cli("tasks", "new", "my-task", "-o", str(target), env_dir=datasets_dir)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    nameless = cli("tasks", "new", env_dir=datasets_dir)
    assert nameless.returncode == 2 and "NAME" in nameless.stderr
    listed = cli("tasks", "list", "--json", "--tasks-dir", str(tmp_path / "tasks"), env_dir=datasets_dir)
    assert "my-task" in {row["id"] for row in json.loads(listed.stdout)}
