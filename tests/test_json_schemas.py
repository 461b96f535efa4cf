"""The JSON Schemas in `docs/schemas/` are those of the models that write the files on disk.

Generated from the pydantic models, so the schema is the documentation; this test fails
when a model changes and the kept schema was not regenerated:

    .venv/bin/python -m tests.test_json_schemas      # rewrites docs/schemas/*.json
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from cellprompt.datasets.models import DatasetMetadata
from cellprompt.evolve import schema as evolve_schema
from cellprompt.export.reproduce import ReproReport
from cellprompt.records.run import Evaluation, RunManifest, TrialRecord, TrialSpec
from cellprompt.sandbox.state import SandboxRecord
from cellprompt.tasks.spec import Task

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"

# file on disk -> the model of the file (or of each JSONL line, or of each item of a JSON list)
FILES: dict[str, type[BaseModel]] = {
    "run.json": RunManifest,
    "specs.json.item": TrialSpec,
    "trials.jsonl.line": TrialRecord,
    "evaluations.jsonl.line": Evaluation,
    "repro.json": ReproReport,
    "evolve.json": evolve_schema.EvolveConfig,
    "evolution.jsonl.line": evolve_schema.CandidateRecord,
    "test_comparison.json": evolve_schema.TestComparison,  # not imported by name: pytest would collect it
    "summary.json": evolve_schema.EvolveSummary,
    "task.yaml": Task,
    "dataset-metadata.json": DatasetMetadata,
    "sandbox-record.json": SandboxRecord,
}


def rendered(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(FILES))
def test_kept_schema_matches_the_model(name: str) -> None:
    path = SCHEMAS / f"{name}.schema.json"
    assert path.exists(), f"missing {path}: run `python -m tests.test_json_schemas`"
    assert path.read_text(encoding="utf-8") == rendered(FILES[name]), (
        f"{path.name} is stale: run `python -m tests.test_json_schemas`")


if __name__ == "__main__":
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    for name, model in FILES.items():
        (SCHEMAS / f"{name}.schema.json").write_text(rendered(model), encoding="utf-8")
