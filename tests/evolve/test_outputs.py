"""What an evolution leaves for people: the HTML section (curve + diff) and the CLI's behaviour."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cellprompt.evolve import html_section, run_evolution, start_evolution
from cellprompt.evolve.report import prompt_diff_html
from cellprompt.evolve.simulation import SimEvaluator, SimReflectionModel, SimWorld
from tests.evolve.conftest import sim_config


@pytest.fixture(scope="module")
def evolved(world: SimWorld, tmp_path_factory: pytest.TempPathFactory):
    folder = start_evolution(sim_config(world, budget=180), tmp_path_factory.mktemp("out"))
    run_evolution(folder, SimEvaluator(world), SimReflectionModel(seed=4))
    return folder


def test_html_section_holds_the_curve_the_test_table_and_the_diff(evolved) -> None:
    title, body = html_section(evolved)
    assert title == "Prompt evolution"
    png = re.search(r'src="data:image/png;base64,([^"]+)"', body)
    assert png and base64.b64decode(png.group(1))[:4] == b"\x89PNG"
    assert "Held-out test tasks" in body and "best − seed" in body
    best = (evolved.path / "best_prompt.txt").read_text()
    added = [ln for ln in best.splitlines() if ln and ln not in evolved.config().seed_prompt]
    assert added and ('class="diff_add"' in body or 'class="diff_chg"' in body)


def test_html_section_plugs_into_the_report(evolved, tmp_path: Path) -> None:
    from cellprompt.export.report import build_report
    from cellprompt.records.run import RunManifest
    from cellprompt.runs.store import RunStore

    store = RunStore.create(tmp_path, RunManifest(run_id="r1"))
    out = build_report([store], tmp_path / "report.html", extra_sections=[html_section(evolved)])
    text = out.read_text(encoding="utf-8")
    assert "Prompt evolution" in text and "data:image/png;base64," in text


def test_the_candidate_table_tells_each_candidates_story(evolved) -> None:
    from cellprompt.evolve.report import candidate_rows

    rows = {r["id"]: r for r in candidate_rows(evolved)}
    assert rows == {r["id"]: r for r in candidate_rows(evolved)}  # deterministic
    assert len(rows) == len({c.candidate_id for c in evolved.candidates()})
    summary = (evolved.path / "summary.json").read_text()
    best = next(r for r in rows.values() if f'"best_id":"{r["id"]}"' in summary.replace(" ", ""))
    assert best["verdict"] == "accepted" and best["val"]
    rejected = [r for r in rows.values() if r["verdict"] == "rejected"]
    assert rejected and all(r["reason"] and r["parent"] and r["change"] for r in rejected)
    _, body = html_section(evolved)
    assert "<h4>Candidates</h4>" in body and "Stopped:" in body


def test_the_report_keeps_splits_apart_and_shows_the_path_and_the_test_interval(evolved) -> None:
    from cellprompt.evolve.report import split_scores

    summary = json.loads((evolved.path / "summary.json").read_text())
    _, body = html_section(evolved)
    for split in ("training", "validation", "held-out test"):
        assert f"<h5>{split}" in body
    scores = split_scores(evolved)
    best, seed = summary["best_id"], summary["seed_id"]
    assert best != seed
    test_best, val_best = scores[(best, "test")], scores[(best, "val")]
    assert test_best.trials == 6 and val_best.trials > test_best.trials  # test trials only on test
    assert test_best.low <= test_best.mean <= test_best.high and test_best.low < test_best.high
    assert {cid for cid, split in scores if split == "test"} == {best, seed}  # test used once, at the end
    section = body.split("<h4>Accepted path</h4>")[1].split("<h4>")[0]
    path = json.loads((evolved.path / "lineage.json").read_text())["path_from_seed"]
    assert len(path) >= 2 and all(cid in section for cid in path) and "validation" in section
    test = summary["test"]
    low = test["delta"] - 1.96 * test["delta_se"]
    assert f"95% CI [{low:+.3f}" in body


def test_an_unchanged_prompt_says_so_instead_of_an_empty_diff() -> None:
    assert "is the seed prompt" in prompt_diff_html("same", "same")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CELLPROMPT_OUTPUTS_DIR": str(cwd / "outputs")}
    return subprocess.run(
        [sys.executable, "-m", "cellprompt.cli.main", "evolve", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_cli_without_a_terminal_names_the_missing_argument(tmp_path: Path) -> None:
    result = _cli("--objective", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "missing --prompt" in result.stderr and "Traceback" not in result.stderr


def test_cli_refuses_a_budget_too_small_before_spending_anything(tmp_path: Path) -> None:
    prompt = tmp_path / "seed.txt"
    prompt.write_text("You analyse single-cell data.")
    result = _cli(
        "--objective",
        "x",
        "--prompt",
        str(prompt),
        "--task",
        "pbmc68k-qc-mito",
        "--val-task",
        "pbmc68k-hvg",
        "--model",
        "reference",
        "--reflection-model",
        "openai:m",
        "--strategy",
        "gepa",
        "--budget",
        "5",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "too small for 3 proposals" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_cli_resume_of_an_unknown_id_is_one_clear_line(tmp_path: Path) -> None:
    result = _cli("--resume", "evolve-nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "not an evolution folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_resume_goes_back_to_the_executor_the_evolution_ran_on(world: SimWorld,
                                                                    tmp_path: Path) -> None:
    """A resumed evolution reuses the executor (and Ray address) its run store recorded, as
    `run --resume` does, unless the flags name another."""
    from cellprompt.runs.executors import remember_executor

    folder = start_evolution(sim_config(world, budget=180), tmp_path / "outputs")
    remember_executor(folder.run_store(), "nosuch", None)
    result = _cli("--resume", folder.path.name, cwd=tmp_path)
    assert result.returncode == 2 and "nosuch" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
