"""Malformed answers and hostile answer files are failed grades with a named reason, never crashes.

The workspace folder came out of the sandbox: its paths are read without following any
symlink, and per-cell CSVs that cannot be one row per cell say what is wrong with them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cellprompt.grading import grade
from cellprompt.grading.answer_files import UnsafePath, read_workspace_file

CELLS = [f"c{i}" for i in range(20)]
TRUTH = {"obs": {"ct": {c: ("T" if i < 10 else "B") for i, c in enumerate(CELLS)},
                 "time": {c: float(i) for i, c in enumerate(CELLS)},
                 "branch": {c: ("trunk" if i < 6 else "A" if i % 2 else "B")
                            for i, c in enumerate(CELLS)}},
         "computed": {"genes": ["G1", "G2", "G3"], "up": ["G1", "G2", "G3", "G4"],
                      "vals": {"x": 1.0}}}
LABELS = {"type": "label_agreement",
          "config": {"truth_obs": "ct", "path": "labels.csv", "matching": "exact",
                     "thresholds": {"accuracy": 0.9}}}
PSEUDO = {"type": "pseudotime_correlation",
          "config": {"truth_time": "time", "truth_branch": "branch", "path": "pt.csv",
                     "thresholds": {"min_branch_spearman": 0.9}}}
GRADERS: list[dict[str, Any]] = [
    LABELS, PSEUDO,
    {"type": "label_agreement", "config": {"truth_obs": "ct", "answer_field": "labels",
                                           "thresholds": {"ari": 0.5}}},
    {"type": "numeric_tolerance", "config": {"truth_path": ["computed", "vals"], "tolerance": 0.1}},
    {"type": "marker_gene_precision_recall",
     "config": {"truth_path": ["computed", "genes"], "truth_allowed_path": ["computed", "up"]}},
    {"type": "label_set_jaccard", "config": {"truth_path": ["computed", "genes"],
                                             "answer_field": "labels"}},
    {"type": "multiple_choice", "config": {"correct_answer": "C"}},
    {"type": "distribution_comparison", "config": {"truth_obs": "ct"}},
]
MALFORMED: list[Any] = [
    None, "C?", 42, [1, 2], {"labels": 5}, {"labels": [1, None, {}]}, {"labels": {"c0": None}},
    {"x": "1.0"}, {"x": float("nan")}, {"x": [1]}, {"top_marker_genes": "G1,G2"},
    {"top_marker_genes": [None, 3]}, {"answer": {"a": 1}}, {"cell_type_distribution": [1]},
    {"cell_type_distribution": {"T": "half", 3: None}},
]
FILES: list[bytes] = [
    b"", b"\x00\xff\xfe binary", b"cell_id\n" + b"\n".join(c.encode() for c in CELLS),
    b"cell_id,label\n", b"a,b,c\n1,2,3\n", ("x" * 100_000).encode(), b"c0,\nc1",
    "\n".join(f"{c},{'nan' if i % 2 else 'inf'}" for i, c in enumerate(CELLS)).encode(),
]


@pytest.mark.parametrize("spec", GRADERS, ids=lambda s: s["type"])
@pytest.mark.parametrize("answer", MALFORMED, ids=range(len(MALFORMED)))
def test_no_grader_raises_on_a_malformed_answer(spec: dict, answer: Any, tmp_path: Path) -> None:
    r = grade(spec, answer, TRUTH, workspace=tmp_path)
    assert not r.passed and r.reasoning


@pytest.mark.parametrize("spec", [LABELS, PSEUDO], ids=["labels", "pseudotime"])
@pytest.mark.parametrize("data", FILES, ids=range(len(FILES)))
def test_no_grader_raises_on_a_malformed_file(spec: dict, data: bytes, tmp_path: Path) -> None:
    (tmp_path / spec["config"]["path"]).write_bytes(data)
    r = grade(spec, None, TRUTH, workspace=tmp_path)
    assert not r.passed and r.reasoning


def _write(tmp_path: Path, name: str, rows: list[str]) -> None:
    (tmp_path / name).write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("spec", [LABELS, PSEUDO], ids=["labels", "pseudotime"])
def test_csv_shape_problems_are_named(spec: dict, tmp_path: Path) -> None:
    name = spec["config"]["path"]
    value = (lambda i, c: TRUTH["obs"]["ct"][c]) if spec is LABELS else (lambda i, c: str(i))
    good = [f"{c},{value(i, c)}" for i, c in enumerate(CELLS)]
    _write(tmp_path, name, ["cell_id,value", *good])
    assert grade(spec, None, TRUTH, workspace=tmp_path).passed
    _write(tmp_path, name, ["cell_id\tvalue", *(r.replace(",", "\t") for r in good)])
    assert "tab-separated" in grade(spec, None, TRUTH, workspace=tmp_path).reasoning
    _write(tmp_path, name, ["value,cell_id", *(",".join(r.split(",")[::-1]) for r in good)])
    assert "swapped" in grade(spec, None, TRUTH, workspace=tmp_path).reasoning
    _write(tmp_path, name, ["cell_id,value", *good, good[3]])
    r = grade(spec, None, TRUTH, workspace=tmp_path)
    assert not r.passed and "more than once" in r.reasoning and "c3" in r.reasoning
    _write(tmp_path, name, ["cell_id;value", *(r.replace(",", ";") for r in good)])
    assert "semicolon" in grade(spec, None, TRUTH, workspace=tmp_path).reasoning


def test_named_columns_in_any_order_are_read(tmp_path: Path) -> None:
    spec = {**LABELS, "config": {**LABELS["config"], "label_column": "label"}}
    rows = [f"{TRUTH['obs']['ct'][c]},{c}" for c in CELLS]
    _write(tmp_path, "labels.csv", ["label,cell_id", *rows])
    assert grade(spec, None, TRUTH, workspace=tmp_path).passed


def test_answer_files_are_never_read_through_a_symlink(tmp_path: Path) -> None:
    secret = tmp_path / "truth.json"
    secret.write_text("c0,T\n" * 5)
    ws = tmp_path / "ws"
    (ws / "real").mkdir(parents=True)
    (ws / "labels.csv").symlink_to(secret)
    (ws / "linked").symlink_to(ws / "real")
    (ws / "real" / "x.csv").write_text("ok")
    os.mkfifo(ws / "fifo.csv")
    with pytest.raises(UnsafePath, match="not a regular file"):
        read_workspace_file(ws, "labels.csv")
    with pytest.raises(UnsafePath, match="link"):
        read_workspace_file(ws, "linked/x.csv")
    with pytest.raises(UnsafePath, match="not a regular file"):
        read_workspace_file(ws, "fifo.csv")  # no hang on a FIFO
    for bad in ("../truth.json", "/etc/passwd", ""):
        with pytest.raises(UnsafePath):
            read_workspace_file(ws, bad)
    assert read_workspace_file(ws, "real/x.csv") == b"ok"
    r = grade(LABELS, None, TRUTH, workspace=ws)
    assert not r.passed and "symlink" in r.reasoning
