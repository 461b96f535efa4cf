"""A file from a newer cellprompt is refused in one line, whichever reader meets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellprompt.errors import EvolveError, RunError
from cellprompt.evolve.folder import EvolutionFolder
from cellprompt.records.run import RunManifest, TrialRecord, TrialSpec
from cellprompt.runs.store import RunStore


def _spec() -> TrialSpec:
    return TrialSpec(trial_id="t1", prompt_id="p", prompt="be careful", task_id="task",
                     task_ref="task", model="reference")


def test_current_versions_read_back(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, RunManifest(run_id="r1"))
    store.append_trial(TrialRecord(trial_id="t1", spec=_spec(), status="submitted"))
    assert store.manifest().run_id == "r1"
    assert [t.trial_id for t in store.trials()] == ["t1"]


def test_newer_manifest_is_refused_in_one_line(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, RunManifest(run_id="r2"))
    data = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(RunError) as err:
        store.manifest()
    assert "\n" not in err.value.message
    assert "newer cellprompt" in err.value.message and "upgrade cellprompt" in err.value.message


def test_newer_trial_line_is_refused_in_one_line(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, RunManifest(run_id="r3"))
    line = TrialRecord(trial_id="t1", spec=_spec(), status="submitted").model_dump(mode="json")
    store.trials_path.write_text(json.dumps({**line, "schema_version": 99}) + "\n")
    with pytest.raises(RunError) as err:
        store.trials()
    assert "\n" not in err.value.message and "newer cellprompt" in err.value.message


def test_newer_evolution_config_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "evolve-x"
    folder.mkdir()
    (folder / "evolve.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(EvolveError) as err:
        EvolutionFolder(folder).config()
    assert "\n" not in err.value.message and "newer cellprompt" in err.value.message
