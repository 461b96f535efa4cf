"""A run folder on disk: the manifest, trials appended as they end, evaluations.

Everything a run knows lives here, written as it happens, so that a crash or
Ctrl-C loses nothing finished and `--resume` can tell what is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from cellprompt.errors import RunError
from cellprompt.runs.schema import Evaluation, RunManifest, TrialRecord, utcnow


class TruncatedLineWarning(UserWarning):
    """A JSONL file ends in a partial line (a crash mid-write); the rest was kept."""


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _append_line(path: Path, model: BaseModel) -> None:
    """One `write` of one whole line, flushed and fsynced: a crash leaves at most a partial tail."""
    line = model.model_dump_json() + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _read_lines(path: Path, model: type[BaseModel]) -> Iterator[BaseModel]:
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield model.model_validate_json(line)
        except ValidationError as exc:
            last = number == len(lines)
            if last and not line.endswith("\n"):
                warnings.warn(f"{path}: line {number} is truncated (a crash mid-write); skipped",
                              TruncatedLineWarning, stacklevel=2)
                continue
            raise RunError(f"{path}: line {number} is not a valid record ({exc.errors()[0]['msg']}); "
                           "fix or remove that line") from exc


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
            raise RunError(f"{self.manifest_path} is not a valid run manifest: {exc}") from exc

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
        _append_line(self.trials_path, record)

    def trials(self) -> list[TrialRecord]:
        """Every finished trial; a later line for the same trial id replaces an earlier one."""
        by_id: dict[str, TrialRecord] = {}
        for rec in _read_lines(self.trials_path, TrialRecord):
            by_id[rec.trial_id] = rec  # type: ignore[union-attr]
        return list(by_id.values())

    def append_evaluation(self, evaluation: Evaluation) -> None:
        _append_line(self.evaluations_path, evaluation)

    def evaluations(self) -> dict[str, Evaluation]:
        return {e.trial_id: e for e in _read_lines(self.evaluations_path, Evaluation)}  # type: ignore[union-attr]

    def write_json(self, name: str, data: object) -> Path:
        path = self.path / name
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return path
