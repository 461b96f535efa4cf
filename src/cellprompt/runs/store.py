"""A run folder on disk: the manifest, trials appended as they end, evaluations.

Everything a run knows lives here, written as it happens, so that a crash or
Ctrl-C loses nothing finished and `--resume` can tell what is missing.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from cellprompt.errors import RunError
from cellprompt.grading.stats import RunStats, compute_stats
from cellprompt.jsonl import append_line, read_lines
from cellprompt.records.run import Evaluation, RunManifest, TrialRecord, utcnow
from cellprompt.records.versioned import one_line


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class RunStore:
    """The folder `outputs/<run_id>/`; see DESIGN.md for its files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / "run.json"

    @property
    def trials_path(self) -> Path:
        return self.path / "trials.jsonl"

    @property
    def evaluations_path(self) -> Path:
        return self.path / "evaluations.jsonl"

    def artifacts_dir(self, trial_id: str) -> Path:
        return self.path / "artifacts" / trial_id

    @classmethod
    def create(cls, outputs_dir: Path, manifest: RunManifest) -> RunStore:
        store = cls(outputs_dir / manifest.run_id)
        if store.manifest_path.exists():
            raise RunError(f"run folder {store.path} already exists; use --resume {manifest.run_id}")
        store.path.mkdir(parents=True, exist_ok=True)
        store.write_manifest(manifest)
        return store

    @classmethod
    def open(cls, ref: str | Path, outputs_dir: Path | None = None) -> RunStore:
        """Open a run by folder path or by id under `outputs_dir`."""
        path = Path(ref)
        if not path.exists() and outputs_dir is not None and (outputs_dir / str(ref)).exists():
            path = outputs_dir / str(ref)
        if not path.is_dir():
            raise RunError(f"run {ref} does not exist: pass a run folder or an id under "
                           f"{outputs_dir or 'outputs/'}")
        store = cls(path)
        if not store.manifest_path.exists():
            raise RunError(f"{path} is not a run folder (no run.json in it)")
        return store

    def manifest(self) -> RunManifest:
        try:
            return RunManifest.model_validate_json(self.manifest_path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            raise RunError(f"{self.manifest_path} is not a valid run manifest: {one_line(exc)}") from exc

    def write_manifest(self, manifest: RunManifest) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    def mark(self, status: str) -> None:
        manifest = self.manifest()
        manifest.status = status  # type: ignore[assignment]
        if status != "running":
            manifest.finished_at = utcnow()
        self.write_manifest(manifest)

    def append_trial(self, record: TrialRecord) -> None:
        append_line(self.trials_path, record)

    def trials(self) -> list[TrialRecord]:
        """Every finished trial; a later line for the same trial id replaces an earlier one."""
        by_id: dict[str, TrialRecord] = {}
        for rec in read_lines(self.trials_path, TrialRecord, RunError):
            by_id[rec.trial_id] = rec
        return list(by_id.values())

    def append_evaluation(self, evaluation: Evaluation) -> None:
        append_line(self.evaluations_path, evaluation)

    def evaluations(self) -> dict[str, Evaluation]:
        return {e.trial_id: e for e in read_lines(self.evaluations_path, Evaluation, RunError)}

    def write_json(self, name: str, data: object) -> Path:
        path = self.path / name
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return path


def stats_for_stores(stores: list[RunStore], *, seed: int = 0) -> RunStats:
    """The statistics of one or more run folders together (`cellprompt report`, `run`'s summary)."""
    return compute_stats([(s.run_id, s.trials(), s.evaluations()) for s in stores], seed=seed)
