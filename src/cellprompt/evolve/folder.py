"""The evolution folder `outputs/evolve-<id>/` and its append-only files.

```
evolve.json           EvolveConfig (what `--resume ID` restarts from)
evolution.jsonl       one CandidateRecord per step
run/                  the one store of the evolution's trials: an ordinary run folder (trials.jsonl,
                      evaluations.jsonl with the judge's verdicts, artifacts/), so notebooks, reports
                      and `cellprompt evaluate` work on it like on any run
reflections/          every reflection-model reply, in the response cache (`llm/cache.py`)
gepa/                 the gepa library's run_dir (its own resume state)
best_prompt.txt, test_comparison.json, lineage.json, summary.json, progress.png   written at the end
```

A trial is found again by the key a strategy asks for it by: (hash of its prompt,
task ref, replicate), all read off the trial's own spec.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from cellprompt.errors import EvolveError
from cellprompt.evolve.schema import CandidateRecord, EvolveConfig
from cellprompt.jsonl import append_line, read_lines
from cellprompt.llm.cache import CacheEntry, stored_entries
from cellprompt.records.run import Evaluation, TrialRecord
from cellprompt.records.versioned import one_line
from cellprompt.runs.plan import task_ref_of
from cellprompt.runs.store import RunStore

M = TypeVar("M", bound=BaseModel)


def text_id(text: str) -> str:
    """A candidate's id: the same text is the same candidate, across sessions and strategies."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def new_evolution_id() -> str:
    return f"evolve-{datetime.now():%Y%m%d-%H%M%S}-{os.urandom(3).hex()}"


class BankedTrial(BaseModel):
    """A trial of the run store under the key the strategy asked for it by, with its judge verdict."""

    prompt_id: str
    task_ref: str
    replicate: int
    record: TrialRecord
    evaluation: Evaluation | None = None


class Progress(BaseModel):
    trials_used: int
    best_val: float | None
    best_id: str | None


class EvolutionFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, outputs_dir: Path, config: EvolveConfig) -> EvolutionFolder:
        folder = cls(outputs_dir / config.evolution_id)
        if folder.config_path.exists():
            raise EvolveError(
                f"evolution folder {folder.path} already exists; use --resume {config.evolution_id}"
            )
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.config_path.write_text(config.model_dump_json(indent=2), encoding="utf-8")
        return folder

    @classmethod
    def open(cls, ref: str | Path, outputs_dir: Path | None = None) -> EvolutionFolder:
        path = Path(ref)
        if not path.is_dir() and outputs_dir is not None:
            path = outputs_dir / str(ref)
        folder = cls(path)
        if not folder.config_path.exists():
            raise EvolveError(
                f"{ref} is not an evolution folder (no evolve.json): pass the id printed "
                "when the evolution started, or its folder"
            )
        return folder

    @property
    def config_path(self) -> Path:
        return self.path / "evolve.json"

    @property
    def candidates_path(self) -> Path:
        return self.path / "evolution.jsonl"

    @property
    def reflections_dir(self) -> Path:
        return self.path / "reflections"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def gepa_dir(self) -> Path:
        return self.path / "gepa"

    def config(self) -> EvolveConfig:
        try:
            return EvolveConfig.model_validate_json(self.config_path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            raise EvolveError(f"{self.config_path} is not a valid evolution config: {one_line(exc)}") from exc

    def append_candidate(self, record: CandidateRecord) -> None:
        append_line(self.candidates_path, record)

    def candidates(self) -> list[CandidateRecord]:
        return list(read_lines(self.candidates_path, CandidateRecord, EvolveError))

    def run_store(self) -> RunStore:
        """The run folder `run/` holding every trial of the evolution, created on first use."""
        if (self.run_dir / "run.json").exists():
            return RunStore.open(self.run_dir)
        from cellprompt.runs.runner import create_run

        cfg = self.config()
        return create_run(self.path, [], command="cellprompt evolve", run_id=self.run_dir.name,
                          config={"evolve": cfg.evolution_id, "model": cfg.model})

    def trials(self) -> list[BankedTrial]:
        """Every trial in the run store (the last record of a retried one), with its evaluation."""
        if not (self.run_dir / "run.json").exists():
            return []
        cfg = self.config()
        refs = [*cfg.train_tasks, *cfg.val_tasks, *cfg.test_tasks]
        asked = {task_ref_of(r): r for r in refs}  # a task file is stored under its absolute path
        store = RunStore.open(self.run_dir)
        evaluations = store.evaluations()
        return [
            BankedTrial(prompt_id=text_id(r.spec.prompt), replicate=r.spec.replicate, record=r,
                        task_ref=asked.get(r.spec.task_ref, r.spec.task_ref),
                        evaluation=evaluations.get(r.trial_id))
            for r in store.trials()
        ]

    def replies(self) -> list[CacheEntry]:
        """Every reflection-model reply recorded for this evolution."""
        return stored_entries(self.reflections_dir)

    def progress(self) -> list[Progress]:
        """Best validation score against trials used, one point per step that changed either."""
        points: list[Progress] = []
        last: Progress | None = None
        for rec in self.candidates():
            point = Progress(trials_used=rec.trials_used, best_val=rec.best_val, best_id=rec.best_id)
            if not points or (point.best_val, point.best_id) != (points[-1].best_val, points[-1].best_id):
                points.append(point)
            last = point
        if points and last is not None and last.trials_used > points[-1].trials_used:
            points.append(last)  # the flat tail up to the trials finally used
        return points

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text, encoding="utf-8")
        return path

    def write_json(self, name: str, data: object) -> Path:
        path = self.path / name
        if isinstance(data, BaseModel):
            path.write_text(data.model_dump_json(indent=2), encoding="utf-8")
        else:
            path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return path


def default_max_words(seed_prompt: str) -> int:
    """A prompt may grow, but not without bound: three times the seed, at least 400 words."""
    from cellprompt.evolve.checks import word_count

    return max(400, 3 * word_count(seed_prompt))
