"""label_agreement: CSV and answer-field labels against withheld labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.errors import GradingError
from cellprompt.grading import grade

TRUTH = {"obs": {"ct": {f"c{i}": ("T" if i < 6 else "B" if i < 9 else "NK") for i in range(12)}}}


def la(**config: object) -> dict:
    base: dict = {"truth_obs": "ct", "path": "labels.csv", "thresholds": {"accuracy": 0.9}}
    return {"type": "label_agreement", "config": {**base, **config}}


def write(ws: Path, rows: list[tuple[str, str]], header: str | None = "cell_id,label") -> None:
    lines = ([header] if header else []) + [f"{c},{lab}" for c, lab in rows]
    (ws / "labels.csv").write_text("\n".join(lines) + "\n")


def renamed(mapping: dict[str, str]) -> list[tuple[str, str]]:
    return [(c, mapping[v]) for c, v in TRUTH["obs"]["ct"].items()]


def test_cluster_ids_are_matched_hungarian(tmp_path: Path) -> None:
    write(tmp_path, renamed({"T": "0", "B": "1", "NK": "2"}))
    r = grade(la(thresholds={"accuracy": 1.0, "ari": 1.0, "nmi": 1.0}), None, TRUTH, workspace=tmp_path)
    assert r.passed and r.metrics["mapping"] == {"0": "T", "1": "B", "2": "NK"}
    assert r.metrics["coverage"] == 1.0


def test_hungarian_is_one_to_one_but_majority_is_not(tmp_path: Path) -> None:
    write(tmp_path, renamed({"T": "0", "B": "0", "NK": "1"}))  # B merged into T's cluster
    hung = grade(la(), None, TRUTH, workspace=tmp_path)
    assert hung.metrics["accuracy"] == pytest.approx(9 / 12) and not hung.passed
    major = grade(la(matching="majority"), None, TRUTH, workspace=tmp_path)
    assert major.metrics["accuracy"] == pytest.approx(9 / 12)
    split = renamed({"T": "0", "B": "1", "NK": "2"})
    split[0] = ("c0", "3")  # an extra singleton cluster inside T
    write(tmp_path, split)
    assert grade(la(matching="majority"), None, TRUTH, workspace=tmp_path).metrics["accuracy"] == 1
    assert grade(la(), None, TRUTH, workspace=tmp_path).metrics["accuracy"] == pytest.approx(11 / 12)


def test_exact_matching_needs_the_names_and_applies_truth_map(tmp_path: Path) -> None:
    write(tmp_path, renamed({"T": "lymphoid", "B": "lymphoid", "NK": "lymphoid"}), header=None)
    g = la(
        matching="exact",
        truth_map={"T": "Lymphoid", "B": "Lymphoid", "NK": "Lymphoid"},
        thresholds={"accuracy": 1.0},
    )
    assert grade(g, None, TRUTH, workspace=tmp_path).passed  # case-insensitive, no header
    write(tmp_path, renamed({"T": "0", "B": "1", "NK": "2"}))
    assert grade(la(matching="exact"), None, TRUTH, workspace=tmp_path).metrics["accuracy"] == 0


def test_missing_cells_count_as_wrong(tmp_path: Path) -> None:
    write(tmp_path, renamed({"T": "T", "B": "B", "NK": "NK"})[:6])
    r = grade(la(matching="exact"), None, TRUTH, workspace=tmp_path)
    assert r.metrics["coverage"] == 0.5 and r.metrics["accuracy"] == 0.5 and not r.passed


def test_label_column_by_name(tmp_path: Path) -> None:
    rows = [f"{c},x,{v}" for c, v in TRUTH["obs"]["ct"].items()]
    (tmp_path / "labels.csv").write_text("cell,other,cell_type\n" + "\n".join(rows))
    assert grade(la(label_column="cell_type", matching="exact"), None, TRUTH, workspace=tmp_path).passed


def test_no_file_or_escaping_path_fails(tmp_path: Path) -> None:
    r = grade(la(), None, TRUTH, workspace=tmp_path)
    assert not r.passed and "not written" in r.reasoning
    (tmp_path.parent / "outside.csv").write_text("c0,T\n")
    assert not grade(la(path="../outside.csv"), None, TRUTH, workspace=tmp_path).passed
    none = grade(la(), None, TRUTH)  # no workspace kept: a failed grade, not a crash
    assert not none.passed and "no workspace" in none.reasoning


def test_answer_field_labels() -> None:
    g = la(path=None, answer_field="labels", thresholds={"ari": 0.99})
    labels = dict(renamed({"T": "a", "B": "b", "NK": "c"}))
    assert grade(g, {"labels": labels}, TRUTH).passed
    assert not grade(g, {"labels": ["a", "b"]}, TRUTH).passed
    assert not grade(g, None, TRUTH).passed


def test_ari_nmi_thresholds_on_random_labels(tmp_path: Path) -> None:
    write(tmp_path, [(c, str(i % 2)) for i, c in enumerate(TRUTH["obs"]["ct"])])
    r = grade(la(thresholds={"ari": 0.5}), None, TRUTH, workspace=tmp_path)
    assert r.metrics["ari"] < 0.5 and not r.passed


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"thresholds": {}}, "thresholds"),
        ({"thresholds": {"f1": 0.5}}, "unknown threshold"),
        ({"path": None}, "answer_field"),
        ({"truth_obs": None}, "truth_obs"),
        ({"matching": "greedy"}, "matching"),
    ],
)
def test_bad_config(config: dict, message: str) -> None:
    with pytest.raises(GradingError, match=message):
        grade(la(**config), None, TRUTH)
