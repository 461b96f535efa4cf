"""Which executor a run uses, and that `--resume` goes back to it (no Ray needed).

`cellprompt run` writes its executor into the manifest; a resumed run reuses it (and its
Ray address) unless the command line names another.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.config import reset_settings
from cellprompt.runs.executors import remember_executor, resolve_executor
from cellprompt.runs.runner import create_run, plan_trials
from cellprompt.runs.store import RunStore


@pytest.fixture
def settings_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # no cellprompt.toml or .env of the project
    for name in ("CELLPROMPT_EXECUTOR", "CELLPROMPT_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


def test_a_resumed_run_reuses_its_executor_unless_overridden(settings_default, tmp_path: Path) -> None:
    specs = plan_trials(prompts={"p": "x"}, tasks=["pbmc68k-qc-mito"], models=["reference"])
    store = create_run(tmp_path / "outputs", specs)
    remember_executor(store, "ray", "ray://head:10001")
    used = RunStore.open(store.path).manifest().config["executor"]
    assert resolve_executor(None, None, used) == ("ray", "ray://head:10001")
    assert resolve_executor(None, "auto", used) == ("ray", "auto"), "--ray-address alone: another cluster"
    assert resolve_executor("local", None, used) == ("local", None), "--executor local: off the cluster"
    assert resolve_executor(None, None, None) == ("local", None), "a run that recorded none: the settings"
