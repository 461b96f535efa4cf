"""Open evolution: `cellprompt evolve --dataset` with the judge's grade as fitness, held-out
replicates for validation and test, and the leak guard refusing dataset facts in a candidate.

The fake agent (OpenAI server) writes a marker-based report only when its prompt says so; the
fake judge (Anthropic server, the default family for an OpenAI agent) grades that report higher;
the fake reflection model first tries to smuggle the dataset's facts into the prompt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellprompt.config import reset_settings
from cellprompt.evolve.leaks import dataset_facts, grader_facts, leak_flag
from cellprompt.evolve.reflection import CLOSE, OPEN, extract_prompt
from tests.conftest import require_sandbox_backend
from tests.fakes.script import FakeRequest, Reply, execute

SEED = "You analyse single-cell data.\n"
RULE = "- Annotate every cluster from its marker genes and write the markers into the report."
LEAK = "- This dataset has 700 cells; its cell types are in obs['bulk_labels']."
CRITERIA = ["correctness", "efficiency", "interpretation", "planning", "clarity", "overall_skill"]


def agent_or_reflector(request: FakeRequest) -> Reply:
    if request.model == "reflector":
        current = extract_prompt(request.user_texts[0], first=True) or ""
        refused = any("cannot be used" in t for t in request.user_texts[1:])
        extra = RULE if refused else f"{RULE}\n{LEAK}"  # first a leak, then the clean rule
        return Reply(text=f"Markers are missing.\n{OPEN}\n{current.rstrip()}\n{extra}\n{CLOSE}")
    if request.turn == 0:
        body = "WITH-MARKERS: cluster 0 CD79A B cells" if "marker genes" in request.system else "done"
        return Reply(tool_calls=[execute(f"open('report.md', 'w').write({body!r}); print('ok')")])
    return Reply(text="Summary written to report.md.")


def judge(request: FakeRequest) -> Reply:
    grade = 85 if "WITH-MARKERS" in request.user_texts[0] else 30
    return Reply(
        text=json.dumps(
            {
                "criteria": [{"name": n, "score": grade / 10, "comment": ""} for n in CRITERIA],
                "grade": grade,
                "comments": "markers" if grade > 50 else "no markers",
            }
        )
    )


@pytest.mark.slow
def test_open_evolution_improves_the_judge_grade_on_held_out_replicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai, fake_anthropic
) -> None:
    require_sandbox_backend("bwrap")
    fake_openai.policy = agent_or_reflector
    fake_anthropic.policy = judge
    (tmp_path / "seed.txt").write_text(SEED)
    env = dict(
        os.environ,
        CELLPROMPT_OUTPUTS_DIR=str(tmp_path / "out"),
        CELLPROMPT_DATASETS_DIR=str(tmp_path / "datasets"),
        CELLPROMPT_SANDBOX_BACKEND="bwrap",
        CELLPROMPT_SANDBOX_MEMORY="2g",
        ANTHROPIC_BASE_URL=fake_anthropic.url,
        OPENAI_API_KEY="sk-fake",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cellprompt.cli.main",
            "evolve",
            "--dataset",
            "builtin:pbmc68k_reduced",
            "--objective",
            "Cluster and annotate the cells.",
            "--prompt",
            "seed.txt",
            "--model",
            "openai:fake-agent",
            "--reflection-model",
            "openai:reflector",
            "--base-url",
            fake_openai.url,
            "--iterations",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "held-out replicates" in result.stderr  # said, not silently assumed
    (folder,) = (tmp_path / "out").glob("evolve-*")
    best = (folder / "best_prompt.txt").read_text()
    assert RULE in best and "700 cells" not in best and "bulk_labels" not in best
    config = json.loads((folder / "evolve.json").read_text())
    assert config["judge_weight"] == 1.0 and config["judge_model"].startswith("anthropic:")
    assert config["max_proposals"] == 1
    train, val, test = config["train_tasks"], config["val_tasks"], config["test_tasks"]
    assert len({*train, *val, *test}) == 3  # three task ids: no trial is shared between splits
    retried = [r for r in fake_openai.requests if r.model == "reflector" and len(r.user_texts) > 1]
    assert retried and "carries task-specific facts" in retried[0].user_texts[-1]
    comparison = json.loads((folder / "test_comparison.json").read_text())
    assert comparison["seed"]["mean"] == pytest.approx(0.30) and comparison["best"]["mean"] == pytest.approx(
        0.85
    )
    trials = [json.loads(line) for line in (folder / "run" / "trials.jsonl").read_text().splitlines()]
    assert all(t["spec"]["task_kind"] == "open" for t in trials)
    assert len(trials) <= config["budget_trials"]
    reset_settings()


def test_leak_guard_on_dataset_and_grader_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellprompt.datasets import describe, resolve

    monkeypatch.setenv("CELLPROMPT_DATASETS_DIR", str(tmp_path))
    reset_settings()
    ds = resolve("builtin:pbmc68k_reduced")
    facts = dataset_facts("builtin:pbmc68k_reduced", ds.name, describe(ds.path), ds.metadata)
    for leaky in (
        "The data hold 700 cells.",
        "Use obs['bulk_labels'] for the cell types.",
        "Expect CD14+ Monocyte, Dendritic and CD56+ NK cells.",
        "Load pbmc68k_reduced first.",
    ):
        assert leak_flag(leaky, facts), leaky
    general = (
        "Compute QC metrics (n_genes, pct_counts_mt), normalise, cluster with leiden, and "
        "annotate B cells from CD79A and MS4A1; filter cells with min_genes=200."
    )
    assert leak_flag(general, facts) is None
    graders = [
        {"type": "multiple_choice", "config": {"correct_answer": "C"}},
        {
            "type": "numeric_tolerance",
            "config": {"ground_truth": {"n_cells_high_mito": 188}, "tolerance": {"n_cells_high_mito": 5}},
        },
    ]
    sealed = grader_facts(graders)
    assert leak_flag("For the fate factor question the answer is C.", sealed)
    assert leak_flag("Known result: n_cells_high_mito is 188.", sealed)
    assert leak_flag("Check the mitochondrial fraction; a cutoff of 5% is common.", sealed) is None
    reset_settings()
