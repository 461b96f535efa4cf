"""The documented trap answers of built-in tasks fail their graders (no sandbox needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.tasks import grade_task, load_task, materialise


@pytest.mark.parametrize(("task_id", "answer"), [
    ("pbmc68k-qc-mito", {"n_cells_high_mito": 0, "median_total_counts": 3333.5}),
    ("pbmc68k-pca-variance", {"pc1_variance_ratio": 0.1395,
                              "top10_cumulative_variance_ratio": 0.305}),
    ("pbmc68k-pca-variance", {"pc1_variance_ratio": 9.77, "top10_cumulative_variance_ratio": 34.3}),
    ("pbmc68k-de-mono-vs-dc", {"n_significant": 245, "fcgr3a_log2fc": 4.5}),
    ("pbmc68k-de-mono-vs-dc", {"n_significant": 177, "fcgr3a_log2fc": None}),
])
def test_numeric_traps_fail(task_id: str, answer: dict, datasets_dir: Path) -> None:
    task = load_task(task_id)
    grades = grade_task(task, answer, truth=materialise(task).truth, workspace=None)
    assert not all(g.passed for g in grades)


def test_majority_label_and_single_cluster_fail(datasets_dir: Path, tmp_path: Path) -> None:
    typing = load_task("pbmc68k-coarse-celltypes")
    mt = materialise(typing)
    cells = list(mt.truth["obs"]["bulk_labels"])
    (tmp_path / "cell_types.csv").write_text(
        "cell_id,cell_type\n" + "".join(f"{c},Myeloid\n" for c in cells))
    [labels, count] = grade_task(typing, {"n_myeloid": 700}, truth=mt.truth, workspace=tmp_path)
    assert labels.metrics["accuracy"] == pytest.approx(369 / 700) and not labels.passed
    assert not count.passed

    clustering = load_task("pbmc68k-leiden-clustering")
    mt = materialise(clustering)
    (tmp_path / "clusters.csv").write_text("cell_id,cluster\n" + "".join(f"{c},0\n" for c in cells))
    [agreement, _] = grade_task(clustering, {"n_clusters": 1}, truth=mt.truth, workspace=tmp_path)
    assert agreement.metrics["ari"] == 0.0 and not agreement.passed


def test_recomputed_cell_cycle_phases_fail(datasets_dir: Path, tmp_path: Path) -> None:
    task = load_task("pbmc68k-cell-cycle")
    mt = materialise(task)
    phases = mt.truth["obs"]["phase"]
    flipped = {c: ("G2M" if i % 2 else p) for i, (c, p) in enumerate(phases.items())}
    (tmp_path / "phases.csv").write_text(
        "cell_id,phase\n" + "".join(f"{c},{p}\n" for c, p in flipped.items()))
    [labels, counts] = grade_task(task, {"n_S": 260, "n_G2M": 390}, truth=mt.truth,
                                  workspace=tmp_path)
    assert not labels.passed and not counts.passed
    (tmp_path / "phases.csv").write_text(
        "cell_id,phase\n" + "".join(f"{c},{p}\n" for c, p in phases.items()))
    [labels, counts] = grade_task(task, {"n_S": 182, "n_G2M": 17}, truth=mt.truth,
                                  workspace=tmp_path)
    assert labels.passed and counts.passed
