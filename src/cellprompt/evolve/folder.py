"""The evolution folder `outputs/evolve-<id>/` and its append-only files.

```
evolve.json           EvolveConfig (what `--resume ID` restarts from)
evolution.jsonl       one CandidateRecord per step
trials.jsonl          every trial used, keyed by (prompt hash, task ref, replicate), with its judge verdict
reflections.jsonl     every reflection-model reply, keyed by a hash of the request
run/                  the runner's own run folder (runner-backed evaluator): notebooks and reports work on it
gepa/                 the gepa library's run_dir (its own resume state)
best_prompt.txt, test_comparison.json, lineage.json, summary.json, progress.png   written at the end
```
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
from cellprompt.evolve.schema import EVOLVE_SCHEMA_VERSION, CandidateRecord, EvolveConfig
from cellprompt.jsonl import append_line, read_lines
from cellprompt.llm.base import ChatReply
from cellprompt.records.run import Evaluation, TrialRecord
from cellprompt.records.versioned import one_line

M = TypeVar("M", bound=BaseModel)


def text_id(text: str) -> str:
    """A candidate's id: the same text is the same candidate, across sessions and strategies."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def new_evolution_id() -> str:
    return f"evolve-{datetime.now():%Y%m%d-%H%M%S}-{os.urandom(3).hex()}"


class BankedTrial(BaseModel):
    """One `trials.jsonl` line: a trial under the key the strategy asked for it by."""

    schema_version: int = EVOLVE_SCHEMA_VERSION
    prompt_id: str
    task_ref: str
    replicate: int
    record: TrialRecord
    evaluation: Evaluation | None = None


class CachedReply(BaseModel):
    schema_version: int = EVOLVE_SCHEMA_VERSION
    key: str
    reply: ChatReply


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
    def trials_path(self) -> Path:
        return self.path / "trials.jsonl"

    @property
    def reflections_path(self) -> Path:
        return self.path / "reflections.jsonl"

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

    def append_trial(self, banked: BankedTrial) -> None:
        append_line(self.trials_path, banked)

    def trials(self) -> list[BankedTrial]:
        return list(read_lines(self.trials_path, BankedTrial, EvolveError))

    def append_reply(self, cached: CachedReply) -> None:
        append_line(self.reflections_path, cached)

    def replies(self) -> list[CachedReply]:
        return list(read_lines(self.reflections_path, CachedReply, EvolveError))

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
